//! `-u user[:group]` resolved the way Docker does, through the container's own
//! `/etc/passwd` and `/etc/group` (never the host's).

use std::path::Path;

use crate::RuntimeError;
use crate::spec::ProcessUser;

/// A resolved user plus its home directory (for `HOME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub user: ProcessUser,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_passwd(rootfs: &Path) -> Vec<PasswdEntry> {
    let text = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).copied().unwrap_or("/").to_owned(),
            })
        })
        .collect()
}

fn read_group(rootfs: &Path) -> Vec<GroupEntry> {
    let text = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| m.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`) against `rootfs`, adding
/// the supplementary groups that list the user and those in `group_add`.
pub fn resolve(rootfs: &Path, spec: &str, group_add: &[String]) -> Result<ResolvedUser, RuntimeError> {
    let err = |message: String| RuntimeError::User { user: spec.to_owned(), message };
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let passwd = read_passwd(rootfs);
    let groups = read_group(rootfs);
    let entry = if let Ok(uid) = user_part.parse::<u32>() {
        passwd.iter().find(|p| p.uid == uid)
    } else {
        Some(
            passwd
                .iter()
                .find(|p| p.name == user_part)
                .ok_or_else(|| err(format!("unable to find user {user_part}: no matching entries in passwd file")))?,
        )
    };
    let uid = match entry {
        Some(e) => e.uid,
        None => user_part.parse().map_err(|_| err("not a number".into()))?,
    };
    let mut gid = entry.map(|e| e.gid).unwrap_or(0);
    let home = entry.map(|e| e.home.clone()).unwrap_or_else(|| "/".to_owned());
    let lookup_group = |g: &str| -> Result<u32, RuntimeError> {
        if let Ok(n) = g.parse::<u32>() {
            return Ok(n);
        }
        groups
            .iter()
            .find(|e| e.name == g)
            .map(|e| e.gid)
            .ok_or_else(|| err(format!("unable to find group {g}: no matching entries in group file")))
    };
    if let Some(g) = group_part {
        gid = lookup_group(g)?;
    }
    let mut additional = Vec::new();
    if group_part.is_none()
        && let Some(e) = entry
    {
        for g in &groups {
            if g.members.contains(&e.name) && g.gid != gid && !additional.contains(&g.gid) {
                additional.push(g.gid);
            }
        }
    }
    for g in group_add {
        let n = lookup_group(g)?;
        if !additional.contains(&n) {
            additional.push(n);
        }
    }
    Ok(ResolvedUser { user: ProcessUser { uid, gid, additional_gids: additional }, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(d.path().join("etc")).expect("mkdir");
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/sh\n",
        )
        .expect("write");
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nwww:x:33:\nstaff:x:50:www,bob\n").expect("write");
        d
    }

    #[test]
    fn resolves_names_numbers_and_groups() {
        let r = rootfs();
        let u = resolve(r.path(), "www", &[]).expect("user");
        assert_eq!(u.user, ProcessUser { uid: 33, gid: 33, additional_gids: vec![50] });
        assert_eq!(u.home, "/var/www");
        let u = resolve(r.path(), "1000:staff", &[]).expect("user");
        assert_eq!(u.user, ProcessUser { uid: 1000, gid: 50, additional_gids: vec![] });
        let u = resolve(r.path(), "", &["www".into()]).expect("user");
        assert_eq!(u.user, ProcessUser { uid: 0, gid: 0, additional_gids: vec![33] });
        assert!(resolve(r.path(), "nobody", &[]).is_err());
        assert!(resolve(r.path(), "root:nogroup", &[]).is_err());
    }
}
