//! `swapscope __package-files DIR`: the man pages and shell completions a package ships,
//! generated from the clap definitions so they never drift from the binary.
use std::{fs, path::Path, process::ExitCode};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::Cli;

pub fn write(dir: &Path) -> anyhow::Result<ExitCode> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut cmd = Cli::command();
    cmd.build();
    let page = |c: &clap::Command, name: &str| -> anyhow::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(c.clone())
            .title(name)
            .render(&mut out)
            .with_context(|| format!("rendering {name}(1)"))?;
        let path = man.join(format!("{name}.1"));
        fs::write(&path, out).with_context(|| format!("writing {}", path.display()))
    };
    page(&cmd, "swapscope")?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        page(sub, &format!("swapscope-{}", sub.get_name()))?;
    }
    for (shell, file) in [
        (Shell::Bash, "swapscope"),
        (Shell::Zsh, "_swapscope"),
        (Shell::Fish, "swapscope.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "swapscope", &mut out);
        let path = completions.join(file);
        fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
