//! The daemon's log output on stderr: text or JSON lines, colour only when
//! stderr is a terminal, no timestamps of our own when stderr is the
//! journal (journald stamps every line), and a level that SIGHUP can change.
use std::os::unix::fs::MetadataExt as _;

use anyhow::{Context, Result};
use tracing_subscriber::{
    layer::SubscriberExt as _, reload, util::SubscriberInitExt as _, EnvFilter, Layer, Registry,
};

use super::args::LogFormat;

/// Changes the level of the installed logger.
pub struct LevelHandle(reload::Handle<EnvFilter, Registry>);

impl LevelHandle {
    pub fn set(&self, level: &str) -> Result<()> {
        let filter =
            EnvFilter::try_new(level).with_context(|| format!("invalid log level {level}"))?;
        self.0
            .reload(filter)
            .context("failed to change the log level")
    }
}

/// Installs the global logger.
pub fn init(level: &str, format: LogFormat) -> Result<LevelHandle> {
    let filter =
        EnvFilter::try_new(level).with_context(|| format!("invalid --log-level {level}"))?;
    let (filter, handle) = reload::Layer::new(filter);
    let stderr = std::io::stderr();
    let ansi = std::io::IsTerminal::is_terminal(&stderr);
    let stamp = !stderr_is_journal();
    let base = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let layer: Box<dyn Layer<_> + Send + Sync> = match (format, stamp) {
        (LogFormat::Text, true) => base.boxed(),
        (LogFormat::Text, false) => base.without_time().boxed(),
        (LogFormat::Json, true) => base.json().boxed(),
        (LogFormat::Json, false) => base.json().without_time().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init()
        .context("failed to install the logger")?;
    Ok(LevelHandle(handle))
}

/// systemd sets `JOURNAL_STREAM=DEV:INODE` for a service whose stderr is
/// connected to the journal; it is ours if stderr is that very stream.
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}
