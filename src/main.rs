/// mimalloc: the service allocates many small, short-lived buffers per request (bodies, JSON, ids);
/// `bench/run` measured it against the system allocator (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    autoseen::cli::run()
}
