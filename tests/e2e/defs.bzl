"""dispatchd_e2e_test: an end-to-end test of the real dispatchd binary."""

def dispatchd_e2e_test(name, data = [], deps = []):
    """A cc_test `name` from `name`.cc that runs dispatchd against private dockerds.

    It runs outside Bazel's sandbox (it starts dockerd as root), one at a time.
    """
    native.cc_test(
        name = name,
        size = "large",
        srcs = [name + ".cc"],
        data = ["//cmd/dispatchd"] + data,
        tags = ["local", "exclusive"],
        deps = [
            "//common/testing:status_matchers",
            "//tests/testing:dispatchd_process",
            "//tests/testing:docker_daemon",
            "//third_party/system:absl",
            "//third_party/system:gtest_main",
        ] + deps,
    )
