use clap::Parser;

fn main() {
    let cli = netd::cli::Cli::parse();
    if let Err(e) = netd::cli::run(cli) {
        eprintln!("netd: error: {e:#}");
        std::process::exit(1);
    }
}
