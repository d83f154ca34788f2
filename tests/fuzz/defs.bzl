"""fuzz_target: one libFuzzer target and the test that replays its corpus."""

def fuzz_target(name, srcs, deps = []):
    """Declares `<name>_fuzzer` and `<name>_corpus_test`.

    `<name>_fuzzer` is the libFuzzer binary (tagged manual: it has no main()
    of its own and links only with clang's -fsanitize=fuzzer, i.e. under
    `bazel build --config=fuzz`, which `make fuzz` runs). `<name>_corpus_test`
    links the same sources with a gtest main() that replays every file of
    corpus/<name>/ through LLVMFuzzerTestOneInput: `make test` runs it with
    the default toolchain.
    """
    native.cc_library(
        name = name + "_target",
        testonly = True,
        srcs = srcs,
        deps = deps + [":fuzz_check"],
        alwayslink = True,
    )
    native.cc_binary(
        name = name + "_fuzzer",
        testonly = True,
        deps = [name + "_target"],
        tags = ["manual"],
    )
    native.cc_test(
        name = name + "_corpus_test",
        size = "small",
        srcs = ["corpus_replay_test.cc"],
        args = ["tests/fuzz/corpus/" + name],
        data = native.glob(["corpus/" + name + "/**"]),
        deps = [
            name + "_target",
            "//third_party/system:gtest",
        ],
    )
