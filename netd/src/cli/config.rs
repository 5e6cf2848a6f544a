//! The daemon's config file (`--config FILE`, default `/etc/netd/netd.toml`).
//!
//! Every `netd daemon` flag has a key of the same name without its dashes
//! (`state-dir = "/var/lib/netd"`, `dns-upstream = ["192.0.2.53"]`,
//! `no-default-bridge = true`). The keys are read off [`DaemonArgs`] itself,
//! so a flag declared there has its key too, and a value from the file goes
//! through the same parser as the flag: the file is turned into the
//! arguments it stands for, in front of the command line's, for the flags
//! the command line does not give (flags win). An unknown key, a value of
//! the wrong type or one the flag's parser refuses is an error naming the
//! key and its line. A key of a flag netd no longer has ([`RETIRED_KEYS`])
//! is ignored with a warning, so that an upgrade keeps an old file valid.
use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args, CommandFactory, FromArgMatches};

use super::args::{Cli, DaemonArgs};

/// Where the daemon looks for its config file unless `--config` says.
pub const DEFAULT_CONFIG: &str = "/etc/netd/netd.toml";

/// Flags that have no key: the file cannot name itself.
const NOT_KEYS: &[&str] = &["config", "help"];

/// Keys of flags an earlier netd had, with why they are ignored now.
const RETIRED_KEYS: &[(&str, &str)] = &[(
    "veth-pool",
    "netd no longer keeps spare veths (a new veth is faster than a spare)",
)];

/// The settings of one daemon start (or reload): the parsed arguments and
/// what the file contributed, per key (for telling what a reload changed).
#[derive(Debug)]
pub struct Settings {
    pub args: DaemonArgs,
    /// The file in use, if any.
    pub file: Option<PathBuf>,
    /// Key → the arguments it stood for (only keys the command line did not
    /// override).
    pub from_file: BTreeMap<String, Vec<OsString>>,
    /// Keys of the file that the command line overrides.
    pub overridden: BTreeSet<String>,
    /// Retired keys of the file, ignored: "FILE line N: `key` ...: why".
    pub ignored: Vec<String>,
    /// The command line's daemon arguments (to load again on reload).
    pub cli: Vec<OsString>,
}

/// The `netd daemon` arguments of `argv` (the whole command line): what
/// follows the `daemon` verb.
pub fn daemon_argv(argv: &[OsString]) -> Vec<OsString> {
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        if a == "daemon" {
            return argv[i + 1..].to_vec();
        }
        // The only global option with a separate value.
        i += if a == "-H" || a == "--host" { 2 } else { 1 };
    }
    Vec::new()
}

/// Reads the config file (if any) and combines it with the command line's
/// daemon arguments `cli`.
pub fn load(cli: &[OsString]) -> Result<Settings> {
    let cmd = daemon_command();
    let given = parse(&cmd, cli)?;
    let explicit = given.config.clone();
    let path = explicit
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => None,
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read config file {}", path.display()))
        }
    };
    let Some(text) = text else {
        return Ok(Settings {
            args: given,
            file: None,
            from_file: BTreeMap::new(),
            overridden: BTreeSet::new(),
            ignored: Vec::new(),
            cli: cli.to_vec(),
        });
    };
    let on_cli = flags_on_command_line(&cmd, cli)?;
    let (keys, ignored) = file_args(&cmd, &path, &text)?;
    let mut from_file = BTreeMap::new();
    let mut overridden = BTreeSet::new();
    for (key, args) in keys {
        if on_cli.contains(&key) {
            overridden.insert(key);
        } else {
            from_file.insert(key, args);
        }
    }
    let mut all: Vec<OsString> = from_file.values().flatten().cloned().collect();
    all.extend(cli.iter().cloned());
    let args = parse(&cmd, &all)
        .with_context(|| format!("config file {} with the command line", path.display()))?;
    Ok(Settings {
        args,
        file: Some(path),
        from_file,
        overridden,
        ignored,
        cli: cli.to_vec(),
    })
}

/// `netd daemon`'s own clap command (with the global `--host`, which may
/// follow the verb).
fn daemon_command() -> clap::Command {
    let host = Cli::command()
        .get_arguments()
        .find(|a| a.get_id() == "host")
        .cloned();
    let cmd = DaemonArgs::augment_args(clap::Command::new("daemon").no_binary_name(true));
    match host {
        Some(h) => cmd.arg(h),
        None => cmd,
    }
}

fn parse(cmd: &clap::Command, argv: &[OsString]) -> Result<DaemonArgs> {
    let m = cmd
        .clone()
        .try_get_matches_from(argv)
        .map_err(|e| anyhow::anyhow!("{}", first_line(&e.to_string())))?;
    DaemonArgs::from_arg_matches(&m).map_err(|e| anyhow::anyhow!("{}", first_line(&e.to_string())))
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or_default();
    l.strip_prefix("error: ").unwrap_or(l).to_string()
}

/// Long names of the flags `argv` sets itself.
fn flags_on_command_line(cmd: &clap::Command, argv: &[OsString]) -> Result<BTreeSet<String>> {
    let m = cmd
        .clone()
        .try_get_matches_from(argv)
        .map_err(|e| anyhow::anyhow!("{}", first_line(&e.to_string())))?;
    Ok(cmd
        .get_arguments()
        .filter(|a| {
            matches!(
                m.value_source(a.get_id().as_str()),
                Some(
                    clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable
                )
            )
        })
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect())
}

/// The keys a config file may hold: long name → how the flag takes values.
fn keys(cmd: &clap::Command) -> BTreeMap<String, ArgAction> {
    cmd.get_arguments()
        .filter(|a| a.get_id() != "host")
        .filter_map(|a| Some((a.get_long()?.to_owned(), a.get_action().clone())))
        .filter(|(k, _)| !NOT_KEYS.contains(&k.as_str()))
        .collect()
}

/// Key → the arguments it stands for.
type FileArgs = BTreeMap<String, Vec<OsString>>;

/// Parses `text` (the file at `path`) into key → the arguments it stands
/// for, each checked by the flag's own parser, and a note for each retired
/// key (ignored).
fn file_args(cmd: &clap::Command, path: &Path, text: &str) -> Result<(FileArgs, Vec<String>)> {
    type Spanned<T> = toml::Spanned<T>;
    let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> = toml::from_str(text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), one_line_toml_error(text, &e)))?;
    let known = keys(cmd);
    let mut out = BTreeMap::new();
    let mut ignored = Vec::new();
    for (key, value) in table {
        let line = line_of(text, key.span().start);
        let at = format!("{} line {line}", path.display());
        let name = key.get_ref().as_str();
        if let Some((_, why)) = RETIRED_KEYS.iter().find(|(k, _)| *k == name) {
            ignored.push(format!("{at}: `{name}` is ignored: {why}; remove it"));
            continue;
        }
        let Some(action) = known.get(name) else {
            bail!(
                "{at}: unknown key `{name}` (keys are the `netd daemon` flags without their dashes: {})",
                known.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        };
        let args = key_args(name, action, value.get_ref())
            .map_err(|e| anyhow::anyhow!("{at}: `{name}`: {e}"))?;
        // The flag's own parser decides whether the value is good.
        parse(cmd, &args).map_err(|e| anyhow::anyhow!("{at}: `{name}`: {e}"))?;
        out.insert(name.to_owned(), args);
    }
    Ok((out, ignored))
}

/// The command-line arguments `key = value` stands for.
fn key_args(key: &str, action: &ArgAction, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let flag = format!("--{key}");
    match action {
        ArgAction::SetTrue | ArgAction::SetFalse => match value {
            toml::Value::Boolean(true) => Ok(vec![flag.into()]),
            toml::Value::Boolean(false) => Ok(Vec::new()),
            other => Err(format!("expected true or false, got {}", describe(other))),
        },
        ArgAction::Append => {
            let items: Vec<&toml::Value> = match value {
                toml::Value::Array(a) => a.iter().collect(),
                one => vec![one],
            };
            items
                .into_iter()
                .map(|v| scalar(v).map(|s| format!("{flag}={s}").into()))
                .collect()
        }
        _ => Ok(vec![format!("{flag}={}", scalar(value)?).into()]),
    }
}

fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(
            "expected a string or a number, got {}",
            describe(other)
        )),
    }
}

fn describe(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// toml's syntax errors span several lines (with a source excerpt); keep
/// "line N: what" on one.
fn one_line_toml_error(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().trim();
    match e.span() {
        Some(span) => format!("line {}: {what}", line_of(text, span.start)),
        None => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(text: &str) -> Result<FileArgs> {
        file_args(&daemon_command(), Path::new("netd.toml"), text).map(|(args, _)| args)
    }

    fn strings(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn every_flag_has_a_key() {
        let cmd = daemon_command();
        let keys = keys(&cmd);
        for a in cmd.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            if a.get_id() == "host" || NOT_KEYS.contains(&long) {
                continue;
            }
            assert!(keys.contains_key(long), "flag --{long} has no key");
        }
        assert!(keys.contains_key("state-dir") && keys.contains_key("dns-upstream"));
        assert!(!keys.contains_key("config"));
    }

    #[test]
    fn keys_become_their_flags() {
        let m = args_of(
            "# comment\nstate-dir = \"/srv/netd\"\ndns-upstream = [\"192.0.2.53\", \"192.0.2.54:5353\"]\n\
             ct-size = 4096\nno-default-bridge = true\nuplink = \"eth1\"\n",
        )
        .unwrap();
        assert_eq!(strings(&m["state-dir"]), ["--state-dir=/srv/netd"]);
        assert_eq!(
            strings(&m["dns-upstream"]),
            [
                "--dns-upstream=192.0.2.53",
                "--dns-upstream=192.0.2.54:5353"
            ]
        );
        assert_eq!(strings(&m["ct-size"]), ["--ct-size=4096"]);
        assert_eq!(strings(&m["no-default-bridge"]), ["--no-default-bridge"]);
        assert_eq!(strings(&m["uplink"]), ["--uplink=eth1"]);
        assert!(args_of("no-default-bridge = false").unwrap()["no-default-bridge"].is_empty());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = args_of("state-dir = \"/x\"\n\nstate_dir = \"/y\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("netd.toml line 3: unknown key `state_dir`"),
            "{e}"
        );
        assert!(e.contains("state-dir"), "{e}");
    }

    /// A file from before the veth pool went still loads: its
    /// `veth-pool` is ignored with a note naming the line.
    #[test]
    fn a_retired_key_is_ignored_with_a_note() {
        let (args, ignored) = file_args(
            &daemon_command(),
            Path::new("netd.toml"),
            "ct-size = 4096\nveth-pool = 16\n",
        )
        .unwrap();
        assert_eq!(args.keys().collect::<Vec<_>>(), ["ct-size"]);
        assert_eq!(ignored.len(), 1, "{ignored:?}");
        assert!(
            ignored[0].starts_with("netd.toml line 2: `veth-pool` is ignored:"),
            "{ignored:?}"
        );
        assert!(!keys(&daemon_command()).contains_key("veth-pool"));
    }

    #[test]
    fn bad_values_are_named_with_their_line() {
        let cases = [
            ("ct-size = \"lots\"", "netd.toml line 1: `ct-size`:"),
            (
                "\n\nsnat-ports = \"9-1\"",
                "netd.toml line 3: `snat-ports`:",
            ),
            (
                "no-default-bridge = \"yes\"",
                "line 1: `no-default-bridge`: expected true or false",
            ),
            ("dns-upstream = [\"not-an-ip\"]", "line 1: `dns-upstream`:"),
            (
                "state-dir = { a = 1 }",
                "line 1: `state-dir`: expected a string or a number, got a table",
            ),
            ("log-format = \"xml\"", "line 1: `log-format`:"),
        ];
        for (text, want) in cases {
            let e = args_of(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = args_of("state-dir = \"/x\"\nct-size = = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("netd.toml: line 2:"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn daemon_argv_skips_the_global_host() {
        let v: Vec<OsString> = ["netd", "-H", "daemon", "daemon", "--ct-size", "9"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(strings(&daemon_argv(&v)), ["--ct-size", "9"]);
    }

    /// The commented default config installed as /etc/netd/netd.toml has a
    /// `# KEY = VALUE` line for every key, and uncommented it is a valid
    /// config whose values are the flags' defaults.
    #[test]
    fn the_shipped_config_has_every_key_with_its_default() {
        let text = include_str!("../../dist/netd.toml");
        let cmd = daemon_command();
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                })
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let (parsed, ignored) =
            file_args(&cmd, Path::new("netd/dist/netd.toml"), &uncommented).unwrap();
        assert!(ignored.is_empty(), "{ignored:?}");
        for key in keys(&cmd).keys() {
            assert!(
                parsed.contains_key(key),
                "netd/dist/netd.toml has no `# {key} = ...` line: add one (commented, with the default)"
            );
        }
        for a in cmd.get_arguments() {
            let (Some(long), [default]) = (a.get_long(), a.get_default_values()) else {
                continue;
            };
            let Some(args) = parsed.get(long) else {
                continue;
            };
            let want = format!("--{long}={}", default.to_string_lossy());
            if a.get_action().takes_values() {
                assert_eq!(
                    strings(args),
                    [want],
                    "netd/dist/netd.toml: the default of {long}"
                );
            }
        }
    }
}
