//! `--generate KIND`: the man page and the shell completions of a binary, written from its
//! clap definition to standard output, so they always list exactly the flags it has.
//! `scripts/dist.sh` runs it on the built binaries for the Debian package; a user who
//! installed with `cargo install` runs it to get the same files (as ripgrep's `rg
//! --generate` does).

use std::io::Write;
use std::process::ExitCode;

use clap::Command;
use clap_complete::Shell;

/// What `--generate` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generate {
    /// The man page (roff), for `man -l` or `/usr/share/man/man1/NAME.1`.
    Man,
    /// Bash completion, for `/usr/share/bash-completion/completions/NAME`.
    CompleteBash,
    /// Zsh completion, for `/usr/share/zsh/vendor-completions/_NAME`.
    CompleteZsh,
    /// Fish completion, for `/usr/share/fish/vendor_completions.d/NAME.fish`.
    CompleteFish,
}

/// Write `kind` for `cmd` to `out`.
pub fn write(kind: Generate, mut cmd: Command, out: &mut dyn Write) -> std::io::Result<()> {
    let shell = match kind {
        Generate::Man => return clap_mangen::Man::new(cmd).render(out),
        Generate::CompleteBash => Shell::Bash,
        Generate::CompleteZsh => Shell::Zsh,
        Generate::CompleteFish => Shell::Fish,
    };
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
    Ok(())
}

/// `--generate KIND`: write it to standard output.
pub fn print(kind: Generate, cmd: Command) -> ExitCode {
    let name = cmd.get_name().to_string();
    let mut out = std::io::stdout().lock();
    match write(kind, cmd, &mut out).and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::say!("{name}: cannot write to standard output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The long flags of `cmd` that the `kind` written for it does not mention (a test of
/// each binary asserts there are none).
pub fn missing_flags(kind: Generate, cmd: Command) -> Vec<String> {
    let mut text = Vec::new();
    write(kind, cmd.clone(), &mut text).expect("writing to memory");
    let text = String::from_utf8_lossy(&text);
    cmd.get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|long| {
            // roff writes a hyphen as \-
            let shown = if kind == Generate::Man {
                long.replace('-', "\\-")
            } else {
                long.to_string()
            };
            !text.contains(&*shown)
        })
        .map(str::to_string)
        .collect()
}
