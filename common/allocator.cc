// dispatchd allocates with jemalloc (Debian's libjemalloc2), linked into
// the binary: routing an event allocates and frees a few dozen small
// objects (protobuf messages and their strings, map nodes) across gRPC's
// threads, and glibc's malloc spent about a third of the controller's CPU
// there (docs/benchmarks.md, "What was changed because of these figures").
//
// jemalloc reads this string at its first allocation. One arena: dispatchd
// runs on few cores, and per-thread caches already keep threads apart; more
// arenas only raise the resident size of an idle agent.
extern "C" {
// NOLINTNEXTLINE: the name is jemalloc's.
const char* malloc_conf = "narenas:1";
}
