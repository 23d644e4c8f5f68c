//! The `swapscope` binary: argument parsing and the edges (files, terminal, exit codes) over the
//! library modules. See docs/ARCHITECTURE.md.

mod cli;

use std::process::ExitCode;

use clap::{Parser as _, error::ErrorKind};

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e)
            if !e.use_stderr()
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            // --help, --version, or no subcommand: clap's own text.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
        Err(e) => {
            eprintln!("swapscope: error: {}", cli::one_line_error(&e));
            return ExitCode::from(2);
        }
    };
    // The models live in their own crate; the core finds them by name once installed.
    swapscope_models::install();
    if args.command.only_prints() {
        swapscope::signal::default_sigpipe();
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("swapscope: error: {}", one_line(&e));
            // A flag's value only the library can check (a model name) is a usage error, as
            // clap's own are: exit status 2.
            let usage = |c: &(dyn std::error::Error + 'static)| {
                c.is::<swapscope::models::SelectError>()
                    || c.downcast_ref::<swapscope::whatif::SweepError>()
                        .is_some_and(|s| {
                            matches!(s, swapscope::whatif::SweepError::TooLarge { .. })
                        })
            };
            if e.chain().any(usage) {
                return ExitCode::from(2);
            }
            ExitCode::FAILURE
        }
    }
}

/// One line: the chain of causes, outermost first, each cause left out when the message before
/// it already says it (the library's errors name their source in their own message, so the
/// chain would repeat "No such file or directory (os error 2)").
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_the_message_already_names_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let said = io.to_string();
        /// As the library's errors are: the source in the message and as the source.
        #[derive(Debug)]
        struct Named {
            source: std::io::Error,
        }
        impl std::fmt::Display for Named {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "creating x.partial: {}", self.source)
            }
        }
        impl std::error::Error for Named {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let e = anyhow::Error::new(Named { source: io }).context("exporting");
        let line = super::one_line(&e);
        assert_eq!(line.matches(&said).count(), 1, "{line}");
        assert!(
            line.starts_with("exporting: creating x.partial: "),
            "{line}"
        );
        let plain = anyhow::anyhow!("outer").context("a\nb");
        assert_eq!(super::one_line(&plain), "a b: outer");
    }
}
