//! `corvid passwd`: makes and edits password files, as `mosquitto_passwd` does.
//!
//! ```text
//! corvid passwd [-c] FILE USER            # asks for the password twice on a terminal, else reads one line
//! corvid passwd [-c] -b FILE USER PASSWORD
//! corvid passwd -D FILE USER              # delete the user
//! corvid passwd -U FILE                   # hash the passwords of a plain-text user:password file
//! ```
//!
//! New hashes are `$7$` (PBKDF2-HMAC-SHA512, 101 iterations unless `--iterations N`), or legacy `$6$` with
//! `-H sha512`. The file is written whole to a temporary file beside it, then renamed over it, with mode 0600
//! (and, when run as root over an existing file, that file's owner). Other lines (comments, other users) stay as
//! they were.

use crate::password::{DEFAULT_ITERATIONS, PasswordHash};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Manage a password file (Mosquitto's format): add or update a user, delete one, or hash a plain-text file.
#[derive(Debug, clap::Args)]
#[command(override_usage = "corvid passwd [-c] [-H HASH] [--iterations N] FILE USER\n       \
                            corvid passwd [-c] [-H HASH] [--iterations N] -b FILE USER PASSWORD\n       \
                            corvid passwd -D FILE USER\n       \
                            corvid passwd -U FILE")]
pub(crate) struct PasswdArgs {
    /// Create a new password file; an existing one is replaced.
    #[arg(short = 'c', conflicts_with_all = ["delete", "upgrade"])]
    create: bool,
    /// Batch mode: the password is the third argument.
    #[arg(short = 'b', conflicts_with_all = ["delete", "upgrade"])]
    batch: bool,
    /// Delete USER from the file.
    #[arg(short = 'D', conflicts_with = "upgrade")]
    delete: bool,
    /// Replace the plain-text passwords of a user:password file with hashes.
    #[arg(short = 'U')]
    upgrade: bool,
    /// The hash of new passwords: sha512-pbkdf2 ($7$, the default) or sha512 (legacy $6$).
    #[arg(short = 'H', value_name = "HASH", value_enum, default_value_t = HashKind::Sha512Pbkdf2)]
    hash: HashKind,
    /// PBKDF2 iterations of new $7$ hashes.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ITERATIONS,
          value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,
    /// The password file.
    file: PathBuf,
    /// The user name.
    user: Option<String>,
    /// The password (with -b only).
    password: Option<String>,
}

/// `-H` values, with `mosquitto_passwd`'s names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum HashKind {
    /// $7$: PBKDF2-HMAC-SHA512.
    #[value(name = "sha512-pbkdf2")]
    Sha512Pbkdf2,
    /// $6$: one round of SHA-512 (weak; for old readers only).
    #[value(name = "sha512")]
    Sha512,
}

/// Runs the subcommand: 0 on success, 1 on failure (with a message on stderr), as `mosquitto_passwd`.
pub(crate) fn run(args: PasswdArgs) -> ExitCode {
    match execute(&args) {
        Ok(message) => {
            if let Some(message) = message {
                eprintln!("{message}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(args: &PasswdArgs) -> Result<Option<String>, String> {
    let file = &args.file;
    let shown = file.display();
    if args.upgrade {
        if args.user.is_some() {
            return Err("-U takes the file only".to_owned());
        }
        let text = read(file)?;
        let (text, hashed) = upgrade(&text, |p| args.hash(p))?;
        write_atomic(file, &text).map_err(|e| format!("{shown}: cannot write: {e}"))?;
        return Ok(Some(format!("{shown}: {hashed} password(s) hashed")));
    }
    let Some(user) = &args.user else { return Err("a user name is needed after the file".to_owned()) };
    check_username(user)?;
    if args.delete {
        if args.password.is_some() {
            return Err("-D takes the file and the user name only".to_owned());
        }
        let text = read(file)?;
        let text = remove_user(&text, user).ok_or_else(|| format!("user {user:?} is not in {shown}"))?;
        write_atomic(file, &text).map_err(|e| format!("{shown}: cannot write: {e}"))?;
        return Ok(None);
    }
    let password = match (&args.password, args.batch) {
        (Some(password), true) => password.clone(),
        (None, true) => return Err("-b needs the password after the user name".to_owned()),
        (Some(_), false) => return Err("a password on the command line needs -b".to_owned()),
        (None, false) => ask_password()?,
    };
    if password.is_empty() {
        return Err("empty password".to_owned());
    }
    let text = if args.create { String::new() } else { read(file)? };
    let hash = args.hash(&password)?;
    let text = set_user(&text, user, &hash);
    write_atomic(file, &text).map_err(|e| format!("{shown}: cannot write: {e}"))?;
    Ok(None)
}

impl PasswdArgs {
    fn hash(&self, password: &str) -> Result<PasswordHash, String> {
        match self.hash {
            HashKind::Sha512Pbkdf2 => PasswordHash::pbkdf2(password.as_bytes(), self.iterations),
            HashKind::Sha512 => PasswordHash::sha512(password.as_bytes()),
        }
        .map_err(|e| format!("no random salt: {e}"))
    }
}

fn read(file: &Path) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{}: no such file (-c creates it)", file.display()),
        _ => format!("{}: cannot read: {e}", file.display()),
    })
}

fn check_username(user: &str) -> Result<(), String> {
    if user.is_empty() {
        Err("empty user name".to_owned())
    } else if user.contains(':') {
        Err("a user name cannot contain ':'".to_owned())
    } else if user.chars().any(char::is_control) {
        Err("a user name cannot contain control characters".to_owned())
    } else if user.starts_with('#') {
        Err("a user name cannot start with '#' (the line would be a comment)".to_owned())
    } else {
        Ok(())
    }
}

/// The user name of a `user:...` line, `None` for comments, blank and other lines.
fn user_of(line: &str) -> Option<&str> {
    if line.starts_with('#') {
        return None;
    }
    line.split_once(':').map(|(user, _)| user)
}

/// The file with `user`'s line replaced (or added at the end).
fn set_user(text: &str, user: &str, hash: &PasswordHash) -> String {
    let entry = format!("{user}:{hash}");
    let mut found = false;
    let mut out = String::with_capacity(text.len() + entry.len() + 1);
    for line in text.lines() {
        if user_of(line) == Some(user) {
            if !found {
                out.push_str(&entry);
                out.push('\n');
            }
            found = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        out.push_str(&entry);
        out.push('\n');
    }
    out
}

/// The file without `user`'s line; `None` if the user is not there.
fn remove_user(text: &str, user: &str) -> Option<String> {
    let mut found = false;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if user_of(line) == Some(user) {
            found = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    found.then_some(out)
}

/// A plain-text file with its passwords hashed, and how many were. Lines already hashed stay as they are.
fn upgrade(text: &str, hash: impl Fn(&str) -> Result<PasswordHash, String>) -> Result<(String, usize), String> {
    let mut out = String::with_capacity(text.len() * 2);
    let mut hashed = 0;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        if trimmed.trim_start().is_empty() || trimmed.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let Some((user, password)) = trimmed.split_once(':') else {
            return Err(format!("line {}: expected user:password, found no ':'", i + 1));
        };
        if password.starts_with("$7$") || password.starts_with("$6$") {
            out.push_str(trimmed);
        } else {
            if password.is_empty() {
                return Err(format!("line {}: user {user:?} has an empty password", i + 1));
            }
            out.push_str(&format!("{user}:{}", hash(password)?));
            hashed += 1;
        }
        out.push('\n');
    }
    Ok((out, hashed))
}

/// The password: typed twice without echo on a terminal, else one line of standard input.
fn ask_password() -> Result<String, String> {
    let stdin = std::io::stdin();
    if !std::io::IsTerminal::is_terminal(&stdin) {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).map_err(|e| format!("cannot read the password: {e}"))?;
        return Ok(strip_newline(line));
    }
    let first = read_hidden("Password: ")?;
    let second = read_hidden("Reenter password: ")?;
    if first != second {
        return Err("the passwords do not match".to_owned());
    }
    Ok(first)
}

fn strip_newline(mut line: String) -> String {
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    line
}

/// Reads one line from the terminal on standard input with echo off.
#[cfg(unix)]
fn read_hidden(prompt: &str) -> Result<String, String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let original = tcgetattr(&stdin).map_err(|e| format!("terminal: {e}"))?;
    let mut silent = original.clone();
    silent.local_modes.remove(LocalModes::ECHO);
    silent.local_modes.insert(LocalModes::ECHONL);
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    tcsetattr(&stdin, OptionalActions::Now, &silent).map_err(|e| format!("terminal: {e}"))?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &original);
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(strip_newline(line))
}

#[cfg(not(unix))]
fn read_hidden(prompt: &str) -> Result<String, String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(strip_newline(line))
}

/// Writes `text` to a temporary file beside `path` (mode 0600), flushes it and renames it over `path`.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            // Keep the owner of the file being replaced (possible as root; otherwise it is ours anyway).
            if let Ok(old) = std::fs::metadata(path) {
                let _ = std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()));
            }
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // The rename itself durable (best effort: not every platform can open a directory).
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::{PasswordFile, Verdict};

    fn hash(p: &str) -> Result<PasswordHash, String> {
        PasswordHash::pbkdf2(p.as_bytes(), 101).map_err(|e| e.to_string())
    }

    #[test]
    fn set_replaces_or_appends_and_keeps_other_lines() {
        let text = "# users\nalice:$6$x$y\nbob:$6$x$y\n";
        let new = set_user(text, "alice", &hash("a").unwrap());
        let lines: Vec<&str> = new.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "# users");
        assert!(lines[1].starts_with("alice:$7$101$"));
        assert_eq!(lines[2], "bob:$6$x$y");
        let new = set_user(&new, "carol", &hash("c").unwrap());
        assert!(new.lines().nth(3).unwrap().starts_with("carol:$7$"));
        let file = PasswordFile::parse(&remove_user(&new, "bob").unwrap()).unwrap();
        assert_eq!(file.check("alice", Some(b"a")), Verdict::Accepted);
        assert_eq!(file.check("carol", Some(b"c")), Verdict::Accepted);
        assert_eq!(file.check("bob", Some(b"")), Verdict::Refused);
        assert!(remove_user(&new, "dave").is_none());
        assert!(remove_user("#alice:x\n", "#alice").is_none(), "comments are not users");
    }

    #[test]
    fn upgrade_hashes_plain_text_only() {
        let (text, n) = upgrade("# c\nalice:one\n\nbob:$7$101$AAAA$BBBB\ncarol:thr:ee\n", hash).unwrap();
        assert_eq!(n, 2);
        assert!(text.contains("bob:$7$101$AAAA$BBBB\n") && text.starts_with("# c\n"));
        let carol = text.lines().find(|l| l.starts_with("carol:")).unwrap();
        let carol = PasswordHash::parse(carol.split_once(':').unwrap().1).unwrap();
        assert!(carol.verify(b"thr:ee"));
        assert!(upgrade("alice\n", hash).unwrap_err().contains("line 1"));
    }

    #[test]
    fn user_names() {
        assert!(check_username("alice").is_ok());
        assert!(check_username("a:b").is_err() && check_username("").is_err() && check_username("a\nb").is_err());
    }

    #[test]
    fn atomic_write_is_private() {
        let dir = std::env::temp_dir().join(format!("corvid-passwd-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pw");
        write_atomic(&path, "a\n").unwrap();
        write_atomic(&path, "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
