//! SIGHUP: the configuration file read again and applied where the running server can take it, as Mosquitto does.
//!
//! Applied at once: `allow_anonymous`, `password_file` and `acl_file` (the files read again, at the paths the file
//! names now), `log_level` (unless `--log-level` overrides it), and the TLS certificates at the listeners' paths.
//! Listeners, `[limits]`, `[storage]`, `data_dir`, `sys_interval` and `[metrics]` take effect at the next start:
//! a change to them is logged as such. A file that does not parse changes nothing; the files it named are still
//! read again.

use crate::config::Config;
use crate::security::Security;
use corvid::Server;
use std::path::PathBuf;
use tracing_subscriber::{EnvFilter, Registry, reload::Handle};

/// What a reload needs to know and change.
pub(crate) struct Reloader {
    /// The configuration file, if one was given.
    pub(crate) path: Option<PathBuf>,
    /// The configuration in force.
    pub(crate) current: Option<Config>,
    /// Whether `--log-level` was given: it wins over the file, at start and at every reload.
    pub(crate) log_level_flag: bool,
    /// Changes the log filter of the running process.
    pub(crate) log_filter: Handle<EnvFilter, Registry>,
}

impl Reloader {
    /// Reads the configuration file again and applies it.
    pub(crate) fn reload(&mut self, server: &Server, security: &Security) {
        let Some(path) = &self.path else {
            crate::listeners::reload(server);
            return;
        };
        match Config::load(path) {
            Ok(config) => {
                if let Some(current) = &self.current {
                    let later = restart_needed(current, &config);
                    if !later.is_empty() {
                        tracing::warn!("SIGHUP: {} changed: takes effect at the next start", later.join(", "));
                    }
                }
                self.apply_log_level(&config);
                security.reload(&config);
                tracing::info!(path = %path.display(), "SIGHUP: configuration reloaded");
                self.current = Some(config);
            }
            Err(e) => {
                tracing::error!("SIGHUP: {e}; the running configuration stays in force");
                if let Some(current) = &self.current {
                    security.reload(current);
                }
            }
        }
        crate::listeners::reload(server);
    }

    fn apply_log_level(&self, config: &Config) {
        let changed = self.current.as_ref().is_none_or(|c| c.log_level != config.log_level);
        if self.log_level_flag || !changed {
            return;
        }
        let level = config.log_level.as_deref().unwrap_or("info");
        match EnvFilter::try_new(level) {
            Ok(filter) => match self.log_filter.reload(filter) {
                Ok(()) => tracing::info!(log_level = level, "SIGHUP: log level changed"),
                Err(e) => tracing::error!("SIGHUP: log level not changed: {e}"),
            },
            Err(e) => tracing::error!("SIGHUP: log_level {level:?} not applied: {e}"),
        }
    }
}

/// The settings that differ between `old` and `new` and that only a restart applies.
fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    [
        ("[[listener]]", old.listeners != new.listeners),
        ("[limits]", old.limits != new.limits),
        ("[storage]", old.storage != new.storage),
        ("[metrics]", old.metrics != new.metrics),
        ("data_dir", old.data_dir != new.data_dir),
        ("sys_interval", old.sys_interval != new.sys_interval),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("corvid.toml")).unwrap()
    }

    #[test]
    fn restart_needed_names_each_changed_section() {
        let old = parse("allow_anonymous = true\n[limits]\nmax_inflight = 10\n");
        let same = parse("allow_anonymous = false\nlog_level = \"debug\"\n[limits]\nmax_inflight = 10\n");
        assert!(restart_needed(&old, &same).is_empty());
        let new = parse(
            "sys_interval = 5\n[limits]\nmax_inflight = 11\n[storage]\nengine = \"memory\"\n\
             [[listener]]\ntype = \"tcp\"\nbind = \"127.0.0.1:1884\"\n",
        );
        assert_eq!(restart_needed(&old, &new), ["[[listener]]", "[limits]", "[storage]", "sys_interval"]);
    }
}
