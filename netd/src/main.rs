use clap::{error::ErrorKind, Parser};

fn main() {
    let cli = match netd::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            // One line, as every other error: what was wrong and where to look.
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let msg = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("netd: error: {msg} (see --help)");
            std::process::exit(2);
        }
    };
    if let Err(e) = netd::cli::run(cli) {
        eprintln!("netd: error: {e:#}");
        std::process::exit(1);
    }
}
