fn main() -> std::process::ExitCode {
    autoseen::cli::run()
}
