//! Build script of both binaries: puts the git commit they are built from into their
//! version (`-V`, `--version`: `patchcord-send 0.1.0 (4f2c9a1e7)`), so a report or a
//! bug says exactly which code ran. Outside a git checkout: "unknown commit".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=9", "HEAD"]).unwrap_or_else(|| "unknown commit".into());
    println!("cargo:rustc-env=PATCHCORD_COMMIT={commit}");
    // rebuild when HEAD moves: HEAD itself, the branch it names, packed refs
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = ["HEAD", "packed-refs"]
        .into_iter()
        .map(String::from)
        .chain(branch);
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
