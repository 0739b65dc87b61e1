//! `--config FILE`: every flag of a binary, read from a TOML file (for a service:
//! `/etc/patchcord/recv.toml`, `send.toml`).
//!
//! The file's keys are the long flag names (`latency-min = 20`, `allow = ["10.0.0.0/8"]`,
//! `quiet = true`), so the file needs no schema of its own: each key is turned into the
//! argument it names (`--latency-min=20`) and clap parses the file's arguments and the
//! command line together, with the same value checks and messages. A flag given on the
//! command line wins: the file's key for it is left out (for a list, the whole list), and
//! so is a key for a flag it cannot be used with (`--sdp` in the file, `--listen` given).
//! A key that is not a flag, or a value of the wrong kind (a list for a one-value flag,
//! a number for a switch), is an error that names the key and the file.

use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Parse the process's arguments, with those of a `--config FILE` among them.
pub fn matches(cmd: Command) -> Result<ArgMatches, clap::Error> {
    matches_from(cmd, std::env::args_os())
}

/// Parse `argv` (program name first), with the arguments of a `--config FILE` among them.
/// `cmd` has the `--config` flag of [`crate::app::SetupArgs`].
pub fn matches_from(
    mut cmd: Command,
    argv: impl IntoIterator<Item = OsString>,
) -> Result<ArgMatches, clap::Error> {
    let argv: Vec<OsString> = argv.into_iter().collect();
    // a first look, only for --config and which flags the command line gives; anything
    // wrong with the command line itself is reported by the full parse below
    let Ok(given) = cmd.clone().ignore_errors(true).try_get_matches_from(&argv) else {
        return cmd.try_get_matches_from(argv);
    };
    let Some(path) = given.get_one::<std::path::PathBuf>("config") else {
        return cmd.try_get_matches_from(argv);
    };
    let file_args =
        file_arguments(&cmd, path, &given).map_err(|e| cmd.error(clap::error::ErrorKind::InvalidValue, e))?;
    let mut merged = argv;
    let rest = merged.split_off(1.min(merged.len()));
    merged.extend(file_args);
    merged.extend(rest);
    cmd.try_get_matches_from(merged)
}

/// The arguments the file at `path` stands for, less the flags the command line gives.
fn file_arguments(
    cmd: &Command,
    path: &std::path::Path,
    given: &ArgMatches,
) -> Result<Vec<OsString>, String> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the config file '{shown}': {e}"))?;
    let table: toml::Table = text.parse().map_err(|e| format!("config file '{shown}': {e}"))?;
    let mut out = Vec::new();
    for (key, value) in &table {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .ok_or_else(|| {
                format!(
                    "config file '{shown}': unknown key '{key}' (keys are the long flags of {}, see --help)",
                    cmd.get_name()
                )
            })?;
        if arg.get_id() == "config" {
            return Err(format!(
                "config file '{shown}': key 'config' (a config file cannot name another)"
            ));
        }
        let excludes = |a: &Arg, b: &Arg| {
            cmd.get_arg_conflicts_with(a)
                .iter()
                .any(|c| c.get_id() == b.get_id())
        };
        let overridden = cmd
            .get_arguments()
            .filter(|b| given.value_source(b.get_id().as_str()) == Some(ValueSource::CommandLine))
            .any(|b| b.get_id() == arg.get_id() || excludes(arg, b) || excludes(b, arg));
        if overridden {
            continue;
        }
        let wrong = |what: &str| {
            format!(
                "config file '{shown}': key '{key}' {what}, not {}",
                value.type_str()
            )
        };
        let flag = format!("--{key}");
        if !arg.get_action().takes_values() {
            match value {
                toml::Value::Boolean(true) => out.push(flag.into()),
                toml::Value::Boolean(false) => {}
                _ => return Err(wrong("is a switch: true or false")),
            }
            continue;
        }
        let many = matches!(arg.get_action(), ArgAction::Append);
        let items = match value {
            toml::Value::Array(items) if many => items.iter().collect(),
            toml::Value::Array(_) => return Err(wrong("takes one value")),
            v => vec![v],
        };
        for item in items {
            let text = match item {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                _ if many => return Err(wrong("takes a string, a number or a list of them")),
                _ => return Err(wrong("takes a string or a number")),
            };
            out.push(format!("{flag}={text}").into());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn cmd() -> Command {
        Command::new("demo")
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_parser(clap::value_parser!(std::path::PathBuf)),
            )
            .arg(
                Arg::new("gain_db")
                    .long("gain-db")
                    .value_parser(clap::value_parser!(f32))
                    .allow_negative_numbers(true),
            )
            .arg(Arg::new("name").long("name"))
            .arg(Arg::new("other").long("other").conflicts_with("name"))
            .arg(
                Arg::new("allow")
                    .long("allow")
                    .action(ArgAction::Append)
                    .num_args(1..),
            )
            .arg(Arg::new("quiet").long("quiet").action(ArgAction::SetTrue))
    }

    fn with_file(text: &str, extra: &[&str]) -> Result<ArgMatches, clap::Error> {
        // one directory per call: the tests run in parallel
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("patchcord-config-{}-{call}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, text).unwrap();
        let mut argv: Vec<OsString> = vec!["demo".into(), "--config".into(), path.into()];
        argv.extend(extra.iter().map(OsString::from));
        let parsed = matches_from(cmd(), argv);
        let _ = std::fs::remove_dir_all(&dir);
        parsed
    }

    #[test]
    fn keys_become_flags_and_the_command_line_wins() {
        let text = "gain-db = -6\nname = \"x\"\nallow = [\"a\", \"b\"]\nquiet = true\n";
        let m = with_file(text, &[]).unwrap();
        assert_eq!(m.get_one::<f32>("gain_db"), Some(&-6.0));
        assert_eq!(m.get_one::<String>("name").map(String::as_str), Some("x"));
        assert_eq!(
            m.get_many::<String>("allow").unwrap().collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(m.get_flag("quiet"));
        let m = with_file(text, &["--gain-db", "3", "--allow", "c"]).unwrap();
        assert_eq!(m.get_one::<f32>("gain_db"), Some(&3.0));
        assert_eq!(m.get_many::<String>("allow").unwrap().collect::<Vec<_>>(), ["c"]);
        // a flag the command line's excludes is left out, whichever of the two declares it
        let m = with_file(text, &["--other", "y"]).unwrap();
        assert_eq!(m.get_one::<String>("name"), None);
        let m = with_file("other = \"y\"\n", &["--name", "x"]).unwrap();
        assert_eq!(m.get_one::<String>("other"), None);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key() {
        for (text, needle) in [
            ("latency = 3\n", "unknown key 'latency'"),
            ("quiet = 1\n", "key 'quiet' is a switch"),
            ("name = [\"a\"]\n", "key 'name' takes one value"),
            ("name = true\n", "key 'name' takes a string or a number"),
            ("config = \"x\"\n", "key 'config'"),
            ("name = \n", "c.toml"),
        ] {
            let e = with_file(text, &[]).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        let e = matches_from(
            cmd(),
            ["demo", "--config", "/nonexistent/c.toml"].map(OsString::from),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot read the config file '/nonexistent/c.toml'"),
            "{e}"
        );
    }
}
