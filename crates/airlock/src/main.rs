//! The `airlock` command line: a thin face over the runtime.

mod bench;
mod bench_decorated;
mod bench_warm;
mod doctor;
mod env;
mod run;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "Run untrusted code in a fresh, strict sandbox"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run code in a fresh sandbox: a FILE, `-c CODE`, or `-` for stdin.
    Run(Box<run::RunArgs>),
    /// Explain which isolation layers this host offers and how to fix what is missing.
    Doctor,
    /// Measure sandboxed runs against bare execution and peers, side by side.
    Bench(bench::BenchArgs),
    /// Dependency environments: list, create or prune the cached package sets.
    #[command(subcommand)]
    Env(env::EnvCmd),
}

fn main() {
    let cli = Cli::parse();
    // Off unless asked for (`AIRLOCK_LOG=warn`): a run's stderr is the program's.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let code = match cli.command {
        Cmd::Run(args) => run::main(*args),
        Cmd::Doctor => doctor::main(),
        Cmd::Bench(args) => bench::main(args),
        Cmd::Env(cmd) => env::main(cmd),
    };
    std::process::exit(code);
}
