//! The `bloomlink` binary: parse arguments, call the library, report an error once.

use clap::Parser;

#[global_allocator]
static ALLOC: bloomlink::alloc::HugePages = bloomlink::alloc::HugePages;

fn main() {
    bloomlink::io::install_quiet_panic_hook();
    let cli = bloomlink::cli::Cli::parse();
    if let Err(e) = bloomlink::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
