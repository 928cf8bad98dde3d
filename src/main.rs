fn main() -> std::process::ExitCode {
    approval_watch::cli::main()
}
