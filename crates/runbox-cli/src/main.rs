//! The `runbox` binary: see the `runbox_cli` library for everything.

fn main() -> std::process::ExitCode {
    runbox_cli::main()
}
