//! The password file and the ACL file in the running broker: the library's hooks that apply them, and their
//! reloading on SIGHUP.
//!
//! - The connection validator checks the user name and password against the password file (unknown user or wrong
//!   password: CONNACK 4 / 0x86; clients without a user name are refused earlier, 5 / 0x87, unless
//!   `allow_anonymous`), and records who the client is in its session items for the ACL hooks.
//! - The publish interceptor checks write access (wills included, when they are published): a refused MQTT 5
//!   publisher gets PUBACK / PUBREC 0x87; a 3.1.1 one is acknowledged and the message dropped.
//! - The subscription interceptor refuses a filter that no read rule could match (SUBACK 0x87 / 0x80).
//! - The delivery filter checks read access for every message queued for a session, retained ones included.
//!
//! Each file sits behind a lock holding an `Arc`: a check clones the `Arc` and lets the lock go, and a reload swaps
//! it, so connections stay up and see the new rules at their next check.

use crate::acl::{Acl, AclFileError, Client, Want};
use crate::password::{PasswordFile, PasswordFileError, Verdict};
use corvid::{
    ConnectContext, ConnectReturnCode, PublishDecision, ReasonCode, ServerOptionsBuilder, SubscriptionDecision,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

/// A file read at start and again on SIGHUP.
#[derive(Debug)]
struct Reloadable<T> {
    path: PathBuf,
    current: RwLock<Arc<T>>,
}

impl<T> Reloadable<T> {
    fn new(path: &Path, value: T) -> Self {
        Self { path: path.to_owned(), current: RwLock::new(Arc::new(value)) }
    }

    fn get(&self) -> Arc<T> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set(&self, value: T) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(value);
    }
}

/// Who a connection is, kept in its session items by the validator for the ACL hooks.
#[derive(Debug, Clone)]
struct Identity {
    username: Option<Arc<str>>,
}

/// A password or ACL file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecurityError {
    #[error("password_file {0}")]
    Passwords(#[from] PasswordFileError),
    #[error("acl_file {0}")]
    Acl(#[from] AclFileError),
}

/// The password and ACL files of the server, either or both.
#[derive(Debug, Default)]
pub(crate) struct Security {
    passwords: Option<Reloadable<PasswordFile>>,
    acl: Option<Reloadable<Acl>>,
}

impl Security {
    /// Reads both files (each optional). A missing or malformed file is an error naming the file and the line.
    pub(crate) fn load(password_file: Option<&Path>, acl_file: Option<&Path>) -> Result<Self, SecurityError> {
        let passwords = match password_file {
            Some(path) => Some(Reloadable::new(path, PasswordFile::load(path)?)),
            None => None,
        };
        let acl = match acl_file {
            Some(path) => Some(Reloadable::new(path, Acl::load(path)?)),
            None => None,
        };
        Ok(Self { passwords, acl })
    }

    /// Whether there is anything to enforce.
    pub(crate) fn is_active(&self) -> bool {
        self.passwords.is_some() || self.acl.is_some()
    }

    /// Says what is in force, at start.
    pub(crate) fn log(&self) {
        if let Some(p) = &self.passwords {
            tracing::info!(path = %p.path.display(), users = p.get().len(), "password file");
        }
        if let Some(a) = &self.acl {
            tracing::info!(path = %a.path.display(), rules = a.get().len(), "ACL file");
        }
    }

    /// SIGHUP: reads both files again. A file that fails keeps its previous contents in force.
    pub(crate) fn reload(&self) {
        if let Some(p) = &self.passwords {
            match PasswordFile::load(&p.path) {
                Ok(file) => {
                    tracing::info!(path = %p.path.display(), users = file.len(), "SIGHUP: password file reloaded");
                    p.set(file);
                }
                Err(e) => tracing::error!("SIGHUP: password file not reloaded, the previous one stays in use: {e}"),
            }
        }
        if let Some(a) = &self.acl {
            match Acl::load(&a.path) {
                Ok(acl) => {
                    tracing::info!(path = %a.path.display(), rules = acl.len(), "SIGHUP: ACL file reloaded");
                    a.set(acl);
                }
                Err(e) => tracing::error!("SIGHUP: ACL file not reloaded, the previous one stays in use: {e}"),
            }
        }
    }

    /// Installs the hooks that enforce the files (none when neither is configured).
    pub(crate) fn install(self: &Arc<Self>, mut builder: ServerOptionsBuilder) -> ServerOptionsBuilder {
        if !self.is_active() {
            return builder;
        }
        let this = self.clone();
        builder = builder.with_async_connection_validator(move |ctx| {
            let this = this.clone();
            async move { this.validate(ctx).await }
        });
        if self.acl.is_none() {
            return builder;
        }
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
        self.acl.as_ref().map(Reloadable::get)
    }

    /// Whether the session may read or write `topic`. A session whose client never passed the validator (one
    /// restored from the durable store whose client has not come back since a restart) has no identity: denied.
    fn allows(&self, client_id: &str, identity: Option<Identity>, topic: &str, wanted: Want) -> bool {
        match (self.acl(), identity) {
            (Some(acl), Some(id)) => acl.allows(&client(client_id, &id), topic, wanted),
            (None, _) => true,
            (Some(_), None) => false,
        }
    }

    async fn validate(self: Arc<Self>, mut ctx: ConnectContext) -> ConnectContext {
        if let (Some(passwords), Some(username)) = (&self.passwords, &ctx.username) {
            let file = passwords.get();
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
        // The identity the ACL hooks see for the rest of the session (replacing an earlier connection's).
        ctx.session_items.insert(Identity { username: ctx.username.as_deref().map(Arc::from) });
        ctx
    }
}

fn client<'a>(client_id: &'a str, identity: &'a Identity) -> Client<'a> {
    Client { client_id, username: identity.username.as_deref() }
}
