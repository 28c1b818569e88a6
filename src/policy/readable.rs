//! Whether the service can read a file the policy names (`on_busy.server_log`), said before any
//! incident needs it. Debian's `/var/log/redis` is `redis:adm 2750` and its logs `redis:adm
//! 0640`: a service in the `redis` group only cannot read them, and every `sha` rule would then
//! silently fall back to the instance's ladder at the first incident.
//!
//! The daemon asks for itself. `check` and `status` are often run as root, who reads anything:
//! then they judge for the service's user (`busyguard`, the unit's `User=`) by the file's owner,
//! group and mode along the path, as the kernel would.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The user the packaged unit runs the daemon as.
pub const SERVICE_USER: &str = "busyguard";

/// Whether the daemon's user can read `path`: `Err` says why not, in words, with what fixes it.
pub fn by_the_service(path: &Path) -> Result<(), String> {
    let root = nix::unistd::geteuid().is_root();
    let service = root
        .then(|| nix::unistd::User::from_name(SERVICE_USER).ok().flatten())
        .flatten();
    match service {
        Some(user) => by_user(path, &user),
        None => by_me(path),
    }
}

/// Whether this process can read `path` (the daemon asks for itself).
pub fn by_this_process(path: &Path) -> Result<(), String> {
    by_me(path)
}

/// As this process.
fn by_me(path: &Path) -> Result<(), String> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| format!("{} cannot be read: {}", path.display(), words(&e)))
}

/// As `user` (its uid, primary group and supplementary groups), by the permission bits of the
/// file and of every folder above it.
fn by_user(path: &Path, user: &nix::unistd::User) -> Result<(), String> {
    let name = std::ffi::CString::new(user.name.as_str()).map_err(|e| e.to_string())?;
    let groups: Vec<u32> = nix::unistd::getgrouplist(&name, user.gid)
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![user.gid.as_raw()]);
    let uid = user.uid.as_raw();
    let may = |meta: &std::fs::Metadata, bit: u32| {
        let mode = meta.mode();
        if meta.uid() == uid {
            mode & (bit << 6) != 0
        } else if groups.contains(&meta.gid()) {
            mode & (bit << 3) != 0
        } else {
            mode & bit != 0
        }
    };
    let shown = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| format!("{shown} cannot be read: {}", words(&e)))?;
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(m) = std::fs::metadata(d)
            && !may(&m, 0o1)
        {
            return Err(format!(
                "{shown} cannot be read by the service's user `{}`: it may not enter {} ({})",
                user.name,
                d.display(),
                owner(&m)
            ));
        }
        dir = d.parent();
    }
    match may(&meta, 0o4) {
        true => Ok(()),
        false => Err(format!(
            "{shown} cannot be read by the service's user `{}` ({}; its groups: {})",
            user.name,
            owner(&meta),
            group_names(&groups)
        )),
    }
}

fn owner(meta: &std::fs::Metadata) -> String {
    let user = nix::unistd::User::from_uid(meta.uid().into())
        .ok()
        .flatten()
        .map_or(meta.uid().to_string(), |u| u.name);
    let group = nix::unistd::Group::from_gid(meta.gid().into())
        .ok()
        .flatten()
        .map_or(meta.gid().to_string(), |g| g.name);
    format!("mode {:04o}, {user}:{group}", meta.mode() & 0o7777)
}

fn group_names(gids: &[u32]) -> String {
    gids.iter()
        .map(|g| {
            nix::unistd::Group::from_gid((*g).into())
                .ok()
                .flatten()
                .map_or(g.to_string(), |g| g.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// What fixes an unreadable server log, said with it.
pub const FIX: &str = "no EVAL is named and `sha` rules never apply; on Debian the log is `redis:adm 0640` in a `redis:adm 2750` folder: add the service's user to `adm` (the package does: `adduser busyguard adm`, then restart busyguard)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_said_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let err = by_me(&dir.path().join("nope.log")).unwrap_err();
        assert!(err.ends_with("cannot be read: no such file"), "{err}");
    }

    #[test]
    fn the_bits_decide_for_another_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.log");
        std::fs::write(&file, "x").unwrap();
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap();
        // A user who owns nothing here, in no group of the file's.
        let other = nix::unistd::User {
            name: "busyguard-test-nobody".into(),
            uid: nix::unistd::Uid::from_raw(64_999),
            gid: nix::unistd::Gid::from_raw(64_999),
            ..me.clone()
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(by_user(&file, &me).is_ok());
        let err = by_user(&file, &other).unwrap_err();
        assert!(err.contains("mode 0640"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(by_user(&file, &other).is_ok());
    }
}
