//! patchcord-send and patchcord-recv as child processes of the self-test: found beside the
//! self-test's own executable (where the package installs all three), else on `PATH`;
//! started with their standard error and `--stats-json` in the work directory; stopped
//! with SIGTERM, as a user's Ctrl-C would, so they write their final records.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where the binaries are: `dir` when given, else the self-test's own directory when they
/// are there, else their bare names (looked up on `PATH`).
pub fn program(dir: Option<&Path>, name: &str) -> PathBuf {
    let beside = || std::env::current_exe().ok()?.parent().map(|d| d.join(name));
    match dir {
        Some(d) => d.join(name),
        None => beside()
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from(name)),
    }
}

/// One running binary.
pub struct Peer {
    /// `patchcord-send` or `patchcord-recv`.
    pub name: &'static str,
    child: Option<Child>,
    stderr_path: PathBuf,
    /// Its `--stats-json` file.
    pub stats_path: PathBuf,
}

impl Peer {
    /// Start `program` with `args` and `--stats-json` into `dir`.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Result<Peer, String> {
        let stderr_path = dir.join(format!("{name}.stderr"));
        let stats_path = dir.join(format!("{name}.json"));
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| format!("cannot create {}: {e}", stderr_path.display()))?;
        let child = Command::new(program)
            .args(args)
            .arg("--stats-json")
            .arg(&stats_path)
            .arg("-q")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e} (use --bin-dir DIR)", program.display()))?;
        Ok(Peer {
            name,
            child: Some(child),
            stderr_path,
            stats_path,
        })
    }

    /// `None` while it runs; its exit status once it has stopped.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Stop it with SIGTERM (SIGKILL after `deadline`); true if it exited cleanly.
    pub fn stop(&mut self, deadline: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on our own child's pid, which we have not reaped yet
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Its standard error, last `lines` lines, for a failure message.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Every JSON record it wrote (unreadable lines are skipped).
    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.stats_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Its last record (the final one once it has stopped), or `Null`.
    pub fn last_record(&self) -> Value {
        self.records().pop().unwrap_or(Value::Null)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
