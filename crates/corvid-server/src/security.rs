//! The password file and the ACL file in the running broker: the library's hooks that apply them, and their
//! reloading on SIGHUP.
//!
//! - The connection validator checks the user name and password against the password file (unknown user or wrong
//!   password: CONNACK 4 / 0x86; clients without a user name are refused earlier, 5 / 0x87, unless
//!   `allow_anonymous`), and records who the client is in its session items for the ACL hooks.
//! - The session restorer records the same for each persistent session restored from the durable store at start,
//!   from the user name stored with it, so the ACL treats it as it treated the session before the restart.
//! - The publish interceptor checks write access (wills included, when they are published): a refused MQTT 5
//!   publisher gets PUBACK / PUBREC 0x87; a 3.1.1 one is acknowledged and the message dropped.
//! - The subscription interceptor refuses a filter that no read rule could match (SUBACK 0x87 / 0x80).
//! - The delivery filter checks read access for every message queued for a session, retained ones included.
//!
//! Each file sits behind a lock holding an `Arc`: a check clones the `Arc` and lets the lock go, and a reload swaps
//! it, so connections stay up and see the new rules at their next check. A reload reads the configuration file
//! again too: `allow_anonymous`, and the paths of both files, take effect the same way.

use crate::acl::{Acl, AclFileError, Client, Want};
use crate::config::Config;
use crate::password::{PasswordFile, PasswordFileError, Verdict};
use corvid::store::StoredUsername;
use corvid::{
    ConnectContext, ConnectReturnCode, PublishDecision, ReasonCode, RestoreContext, ServerOptionsBuilder,
    SubscriptionDecision,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// A file read at start and again on SIGHUP, at a path a reload may change, or none.
#[derive(Debug)]
struct Slot<T>(RwLock<Option<(PathBuf, Arc<T>)>>);

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self(RwLock::new(None))
    }
}

impl<T> Slot<T> {
    fn new(loaded: Option<(PathBuf, T)>) -> Self {
        Self(RwLock::new(loaded.map(|(path, value)| (path, Arc::new(value)))))
    }

    fn get(&self) -> Option<Arc<T>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).as_ref().map(|(_, value)| value.clone())
    }

    fn path(&self) -> Option<PathBuf> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).as_ref().map(|(path, _)| path.clone())
    }

    fn set(&self, loaded: Option<(PathBuf, T)>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = loaded.map(|(path, value)| (path, Arc::new(value)));
    }

    /// SIGHUP: puts a file read again in force (before logging it: whoever reads the log may rely on it), forgets
    /// one no longer named, or keeps the previous one when it fails to load.
    fn reload(
        &self,
        loaded: Result<Option<(PathBuf, T)>, SecurityError>,
        what: &str,
        size: impl Fn(&T) -> String,
        removed: &str,
    ) {
        match loaded {
            Ok(Some((path, value))) => {
                let (shown, size) = (path.display().to_string(), size(&value));
                self.set(Some((path, value)));
                tracing::info!(path = %shown, "SIGHUP: {what} reloaded ({size})");
            }
            Ok(None) => {
                if self.path().is_some() {
                    self.set(None);
                    tracing::info!("SIGHUP: {removed}");
                }
            }
            Err(e) => tracing::error!("SIGHUP: {what} not reloaded, the previous one stays in use: {e}"),
        }
    }
}

/// Who a connection is, kept in its session items by the validator (or, for a restored session, the session
/// restorer) for the ACL hooks.
#[derive(Debug, Clone)]
struct Identity {
    username: Option<Arc<str>>,
}

impl Identity {
    /// The identity of a restored session: that of its client's last connection, if the store kept its user name.
    fn restored(username: &StoredUsername) -> Option<Self> {
        match username {
            StoredUsername::Named(name) => Some(Self { username: Some(Arc::from(&**name)) }),
            StoredUsername::Anonymous => Some(Self { username: None }),
            _ => None,
        }
    }
}

/// A password or ACL file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecurityError {
    #[error("password_file {0}")]
    Passwords(#[from] PasswordFileError),
    #[error("acl_file {0}")]
    Acl(#[from] AclFileError),
}

/// Who may connect and what they may do: `allow_anonymous`, the password file and the ACL file of the
/// configuration file. With no configuration file there is nothing to enforce and no hook is installed.
#[derive(Debug, Default)]
pub(crate) struct Security {
    /// Whether a configuration file is in force: then the validator is installed, so that a reload can turn the
    /// password file or the refusal of anonymous clients on and off.
    configured: bool,
    allow_anonymous: AtomicBool,
    passwords: Slot<PasswordFile>,
    acl: Slot<Acl>,
    /// Whether the ACL hooks (and the session restorer that gives restored sessions their identity) are installed.
    /// They are called for every message, and a publish interceptor takes publishers off the direct path, so only
    /// when the file at start names an ACL file; adding one later takes a restart.
    acl_hooks: bool,
    /// Sessions restored at start from records without a user name (written by an earlier version): denied by the
    /// ACL until their clients connect again.
    restored_without_identity: AtomicUsize,
}

impl Security {
    /// Reads the files a configuration names (each optional). A missing or malformed file is an error naming the
    /// file and the line.
    pub(crate) fn load(config: Option<&Config>) -> Result<Self, SecurityError> {
        let Some(config) = config else { return Ok(Self::default()) };
        let acl = load_acl(config.acl_file.as_deref())?;
        Ok(Self {
            configured: true,
            allow_anonymous: AtomicBool::new(allow_anonymous(config)),
            passwords: Slot::new(load_passwords(config.password_file.as_deref())?),
            acl_hooks: acl.is_some(),
            acl: Slot::new(acl),
            restored_without_identity: AtomicUsize::new(0),
        })
    }

    /// Says what is in force, at start (once the server has started: restored sessions are counted).
    pub(crate) fn log(&self) {
        if let (Some(path), Some(file)) = (self.passwords.path(), self.passwords.get()) {
            tracing::info!(path = %path.display(), users = file.len(), "password file");
        }
        if let (Some(path), Some(acl)) = (self.acl.path(), self.acl.get()) {
            tracing::info!(path = %path.display(), rules = acl.len(), "ACL file");
        }
        let unknown = self.restored_without_identity.load(Ordering::Relaxed);
        if unknown > 0 {
            tracing::warn!(
                sessions = unknown,
                "restored sessions stored without their user name (by an earlier version): the ACL lets no message \
                 through to them until their clients connect again"
            );
        }
    }

    /// SIGHUP: applies `config` (read again): `allow_anonymous`, and the password and ACL files read again, at the
    /// paths it names now. A file that fails keeps its previous contents in force.
    pub(crate) fn reload(&self, config: &Config) {
        if !self.configured {
            return;
        }
        let anonymous = allow_anonymous(config);
        if self.allow_anonymous.swap(anonymous, Ordering::SeqCst) != anonymous {
            tracing::info!(allow_anonymous = anonymous, "SIGHUP: allow_anonymous changed");
        }
        let loaded = load_passwords(config.password_file.as_deref());
        let removed = "password_file removed: user names are no longer checked";
        self.passwords.reload(loaded, "password file", |f| format!("users={}", f.len()), removed);
        if config.acl_file.is_some() && !self.acl_hooks {
            tracing::warn!("SIGHUP: acl_file added: access rules take effect at the next start");
            return;
        }
        let loaded = load_acl(config.acl_file.as_deref());
        let removed = "acl_file removed: every topic is allowed";
        self.acl.reload(loaded, "ACL file", |a| format!("rules={}", a.len()), removed);
    }

    /// Installs the hooks that enforce the configuration (none without a configuration file).
    pub(crate) fn install(self: &Arc<Self>, mut builder: ServerOptionsBuilder) -> ServerOptionsBuilder {
        if !self.configured {
            return builder;
        }
        let this = self.clone();
        builder = builder.with_async_connection_validator(move |ctx| {
            let this = this.clone();
            async move { this.validate(ctx).await }
        });
        if !self.acl_hooks {
            return builder;
        }
        let this = self.clone();
        builder = builder.with_session_restorer(move |ctx| this.restore_identity(ctx));
        let this = self.clone();
        builder = builder.with_publish_interceptor(move |c| {
            // Messages from the process itself are not subject to the ACL.
            let Some(client_id) = &c.client_id else { return };
            if !this.allows(client_id, c.session_items.get::<Identity>(), c.message.topic.as_str(), Want::Write) {
                tracing::debug!(client_id = %client_id, topic = %c.message.topic, "ACL: publish denied");
                c.decision = PublishDecision::Refuse(ReasonCode::NotAuthorized);
            }
        });
        let this = self.clone();
        builder = builder.with_subscription_interceptor(move |c| {
            let filter = c.topic_filter.shared().map_or(c.topic_filter.as_str(), |s| s.filter);
            let allowed = match (this.acl(), c.session_items.get::<Identity>()) {
                (Some(acl), Some(id)) => acl.allows_subscription(&client(&c.client_id, &id), filter),
                _ => false,
            };
            if !allowed {
                tracing::debug!(client_id = %c.client_id, filter = %c.topic_filter, "ACL: subscription denied");
                c.decision = SubscriptionDecision::Refuse(ReasonCode::NotAuthorized);
            }
        });
        let this = self.clone();
        builder.with_delivery_filter(move |d| {
            this.allows(d.client_id, d.session_items.get::<Identity>(), d.message.topic.as_str(), Want::Read)
        })
    }

    fn acl(&self) -> Option<Arc<Acl>> {
        self.acl.get()
    }

    /// Whether the session may read or write `topic`. A session with no identity is denied: one restored from a
    /// record written before user names were stored, until its client connects again.
    fn allows(&self, client_id: &str, identity: Option<Identity>, topic: &str, wanted: Want) -> bool {
        match (self.acl(), identity) {
            (Some(acl), Some(id)) => acl.allows(&client(client_id, &id), topic, wanted),
            (None, _) => true,
            (Some(_), None) => false,
        }
    }

    /// The session restorer: gives a restored session the identity its client's last connection had, so the ACL
    /// hooks treat it as before the restart.
    fn restore_identity(&self, ctx: &RestoreContext) {
        match Identity::restored(&ctx.username) {
            Some(identity) => {
                ctx.session_items.insert(identity);
            }
            None => {
                self.restored_without_identity.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn validate(self: Arc<Self>, mut ctx: ConnectContext) -> ConnectContext {
        // Checked here rather than by the library's `allow_anonymous`, so that a reload can change it.
        if ctx.username.is_none() && !self.allow_anonymous.load(Ordering::Relaxed) {
            ctx.refuse(ConnectReturnCode::NotAuthorized);
            return ctx;
        }
        if let (Some(file), Some(username)) = (self.passwords.get(), &ctx.username) {
            let username = username.to_string();
            let password = ctx.password.clone();
            // PBKDF2 is deliberately slow: off the connection's worker thread.
            let verdict = tokio::task::spawn_blocking(move || file.check(&username, password.as_deref()))
                .await
                .unwrap_or(Verdict::Refused);
            if verdict == Verdict::Refused {
                ctx.refuse(ConnectReturnCode::BadUserNameOrPassword);
                return ctx;
            }
        }
        // The identity the ACL hooks see for the rest of the session (replacing an earlier connection's). Without
        // them nobody reads it: no item, so the session keeps no item map (about 200 bytes per connection).
        if self.acl_hooks {
            ctx.session_items.insert(Identity { username: ctx.username.as_deref().map(Arc::from) });
        }
        ctx
    }
}

/// `allow_anonymous` of a configuration file: absent means false, as in Mosquitto 2.
fn allow_anonymous(config: &Config) -> bool {
    config.allow_anonymous.unwrap_or(false)
}

fn load_passwords(path: Option<&Path>) -> Result<Option<(PathBuf, PasswordFile)>, SecurityError> {
    Ok(match path {
        Some(path) => Some((path.to_owned(), PasswordFile::load(path)?)),
        None => None,
    })
}

fn load_acl(path: Option<&Path>) -> Result<Option<(PathBuf, Acl)>, SecurityError> {
    Ok(match path {
        Some(path) => Some((path.to_owned(), Acl::load(path)?)),
        None => None,
    })
}

fn client<'a>(client_id: &'a str, identity: &'a Identity) -> Client<'a> {
    Client { client_id, username: identity.username.as_deref() }
}
