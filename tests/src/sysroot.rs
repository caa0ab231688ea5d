//! A fake OSTree sysroot in a temporary directory, deployed with the real `ostree admin`,
//! and the signed OS repository that feeds it.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cmd::{opt_path, Tool};
use crate::error::{FixtureError, IoContext, Result};
use crate::gpg::GpgKey;
use crate::ostree::{CommitSpec, OstreeRepo, RemoteSpec, RepoMode, UsbDrive};

pub const OS_NAME: &str = "exampleos";
pub const OS_REF: &str = "exampleos/x86_64/stable";
pub const OS_COLLECTION_ID: &str = "org.example.Os";
pub const OS_REMOTE: &str = "exampleos";
pub const KERNEL_VERSION: &str = "6.1.0";
/// Kernel argument given at the first deployment.
pub const KARG: &str = "root=LABEL=ROOT";
/// Directories [`OsRepo::add_root_layout`] adds for mounts.
const ROOT_MOUNT_POINTS: [&str; 7] = ["sysroot", "boot", "var", "proc", "run", "dev", "tmp"];
/// Links [`OsRepo::add_root_layout`] adds, as merged-/usr systems and OSTree OSes have them.
const ROOT_LINKS: [(&str, &str); 4] = [
    ("ostree", "sysroot/ostree"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
    ("sbin", "usr/sbin"),
];
/// File in the OS tree whose content is `VERSION\n`.
pub const VERSION_FILE: &str = "usr/share/exampleos/version";
/// `core.min-free-space-size` of the fixture sysroot's repository.
pub const FIXTURE_RESERVE: &str = "16MB";

/// The OS vendor's side: a signed archive repository with a collection ID, and the tree its
/// commits are made from.
#[derive(Debug, Clone)]
pub struct OsRepo {
    pub repo: OstreeRepo,
    /// The tree committed; [`OsRepo::commit_version`] rewrites its version files.
    pub data: PathBuf,
    pub key: GpgKey,
}

impl OsRepo {
    /// `base/osrepo` (archive, collection [`OS_COLLECTION_ID`]) and `base/osdata`: a bootable
    /// tree with a kernel and initramfs in `usr/lib/modules`, config in `usr/etc`, a `bin`
    /// symlink and an executable. Nothing is committed yet.
    pub fn create(base: &Path, key: &GpgKey) -> Result<OsRepo> {
        let repo = OstreeRepo::init(
            &base.join("osrepo"),
            RepoMode::Archive,
            Some(OS_COLLECTION_ID),
        )?;
        let data = base.join("osdata");
        let modules = data.join("usr/lib/modules").join(KERNEL_VERSION);
        for dir in [modules.clone(), data.join("usr/bin"), data.join("usr/etc")] {
            fs::create_dir_all(&dir).at("create directory", &dir)?;
        }
        write(&modules.join("vmlinuz"), "a kernel\n")?;
        write(&modules.join("initramfs.img"), "an initramfs\n")?;
        write(&data.join("usr/etc/aconfigfile"), "a config file\n")?;
        symlink("usr/bin", data.join("bin")).at("create symlink", data.join("bin"))?;
        Ok(OsRepo {
            repo,
            data,
            key: key.clone(),
        })
    }

    /// Writes `version` into the tree (os-release, [`VERSION_FILE`], `usr/bin/sh`), commits it
    /// bootable and signed on [`OS_REF`] with `version` metadata, and updates the signed
    /// summary. Returns the commit.
    pub fn commit_version(&self, version: &str) -> Result<String> {
        self.commit_version_with(version, |spec| spec)
    }

    /// Like [`OsRepo::commit_version`], letting the caller adjust the commit (timestamp,
    /// extra metadata, another key…).
    pub fn commit_version_with<'a>(
        &'a self,
        version: &str,
        adjust: impl FnOnce(CommitSpec<'a>) -> CommitSpec<'a>,
    ) -> Result<String> {
        write(
            &self.data.join("usr/etc/os-release"),
            &format!(
                "NAME=ExampleOS\nVERSION={version}\nID={OS_NAME}\nVERSION_ID={version}\nPRETTY_NAME=\"ExampleOS {version}\"\n"
            ),
        )?;
        write(&self.data.join(VERSION_FILE), &format!("{version}\n"))?;
        let sh = self.data.join("usr/bin/sh");
        write(
            &sh,
            &format!("#!/bin/true\n# an executable, version {version}\n"),
        )?;
        fs::set_permissions(&sh, fs::Permissions::from_mode(0o755)).at("chmod", &sh)?;
        let spec = CommitSpec::new(OS_REF, &self.data)
            .subject(&format!("ExampleOS {version}"))
            .version(version)
            .bootable()
            .sign(&self.key);
        let commit = self.repo.commit(&adjust(spec))?;
        self.repo.update_summary(Some(&self.key))?;
        Ok(commit)
    }

    /// Adds what a real OS tree has so that its deployments can be a running root: the
    /// mount points `sysroot`, `boot`, `var`, `proc`, `run`, `dev` and `tmp`, `ostree ->
    /// sysroot/ostree` (libostree finds the booted sysroot's deployments through it), and
    /// `lib`, `lib64` and `sbin` links into `usr`. Commits made after this carry them.
    pub fn add_root_layout(&self) -> Result<()> {
        for dir in ROOT_MOUNT_POINTS {
            let path = self.data.join(dir);
            fs::create_dir_all(&path).at("create directory", &path)?;
        }
        for (name, target) in ROOT_LINKS {
            let path = self.data.join(name);
            symlink(target, &path).at("create symlink", &path)?;
        }
        Ok(())
    }

    /// `ostree create-usb DRIVE org.example.Os exampleos/x86_64/stable`.
    pub fn create_usb(&self, drive: &Path) -> Result<UsbDrive> {
        self.repo.create_usb(drive, &[(OS_COLLECTION_ID, OS_REF)])
    }
}

/// One deployment as `ostree admin status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub os: String,
    pub commit: String,
    pub serial: u32,
    pub version: Option<String>,
    pub origin_refspec: Option<String>,
    /// `*` marker (only on a booted system).
    pub booted: bool,
    /// Status words after the checksum, such as `(pending)` or `(rollback)`.
    pub flags: Vec<String>,
}

/// A fake sysroot (`base/sysroot`) with OS v1 deployed from a GPG-verified remote.
#[derive(Debug)]
pub struct Sysroot {
    pub path: PathBuf,
    pub os: OsRepo,
    /// The commit deployed by [`Sysroot::create`] (version `1.0`).
    pub v1: String,
}

impl Sysroot {
    /// Builds OS repo and tree (see [`OsRepo::create`]), commits version `1.0`, then:
    /// `ostree admin init-fs`, `os-init`, the syslinux stub, remote [`OS_REMOTE`] with
    /// collection ID and GPG verification on (trusting `key`), a verified pull and
    /// `ostree admin deploy --karg=root=LABEL=ROOT`.
    pub fn create(base: &Path, key: &GpgKey) -> Result<Sysroot> {
        Self::create_from(base, OsRepo::create(base, key)?)
    }

    /// Like [`Sysroot::create`], from an OS repository made by [`OsRepo::create`] (and
    /// adjusted, such as by [`OsRepo::add_root_layout`]) with nothing committed yet.
    pub fn create_from(base: &Path, os: OsRepo) -> Result<Sysroot> {
        let key = os.key.clone();
        let v1 = os.commit_version("1.0")?;
        let path = base.join("sysroot");
        fs::create_dir_all(&path).at("create directory", &path)?;
        Tool::new("ostree")
            .args(["admin", "init-fs"])
            .arg(&path)
            .run()?;
        let sysroot = Sysroot { path, os, v1 };
        // A fixed reserve instead of 3% of the host's disk, so a nearly full test machine
        // does not turn every install test into a free-space refusal.
        sysroot
            .repo()
            .config_set("core.min-free-space-size", FIXTURE_RESERVE)?;
        sysroot.admin("os-init").arg(OS_NAME).run()?;
        // Bootloader stub from ostree's own tests, so deploys also write syslinux.cfg.
        let boot = sysroot.path.join("boot");
        fs::create_dir_all(boot.join("loader.0")).at("create directory", boot.join("loader.0"))?;
        symlink("loader.0", boot.join("loader")).at("create symlink", boot.join("loader"))?;
        write(&boot.join("loader/syslinux.cfg"), "")?;
        fs::create_dir_all(boot.join("syslinux")).at("create directory", boot.join("syslinux"))?;
        symlink("../loader/syslinux.cfg", boot.join("syslinux/syslinux.cfg"))
            .at("create symlink", boot.join("syslinux/syslinux.cfg"))?;

        let repo = sysroot.repo();
        repo.remote_add(
            &RemoteSpec::file(OS_REMOTE, &sysroot.os.repo.path)
                .collection_id(OS_COLLECTION_ID)
                .trust(&key),
        )?;
        sysroot.upgrade()?;
        Ok(sysroot)
    }

    /// Pulls the newest OS from the vendor's repository and deploys it, as `ostree admin
    /// upgrade` would.
    pub fn upgrade(&self) -> Result<()> {
        self.repo().pull(OS_REMOTE, &[OS_REF])?;
        self.admin("deploy")
            .arg(format!("--os={OS_NAME}"))
            .arg(format!("--karg={KARG}"))
            .arg(format!("{OS_REMOTE}:{OS_REF}"))
            .run()?;
        Ok(())
    }

    /// Another machine installed from the same OS at the same version: a copy of this
    /// sysroot at `path` (hard links kept, as a reinstall from the same image would have
    /// them), fed by the same OS repository.
    pub fn copy_to(&self, path: &Path) -> Result<Sysroot> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).at("create directory", parent)?;
        }
        Tool::new("cp").arg("-a").arg(&self.path).arg(path).run()?;
        Ok(Sysroot {
            path: path.to_owned(),
            os: self.os.clone(),
            v1: self.v1.clone(),
        })
    }

    /// The sysroot's repository, `ostree/repo` (bare).
    pub fn repo(&self) -> OstreeRepo {
        OstreeRepo::open(&self.path.join("ostree/repo"))
    }

    /// `ostree admin SUBCOMMAND --sysroot=PATH`.
    pub fn admin(&self, subcommand: &str) -> Tool {
        Tool::new("ostree")
            .args(["admin", subcommand])
            .arg(opt_path("--sysroot", &self.path))
    }

    /// `ostree admin status` output.
    pub fn status(&self) -> Result<String> {
        self.admin("status").stdout()
    }

    /// The deployments, default first, parsed from `ostree admin status`.
    pub fn deployments(&self) -> Result<Vec<Deployment>> {
        parse_status(&self.status()?)
    }

    /// The default (first) deployment.
    pub fn default_deployment(&self) -> Result<Deployment> {
        self.deployments()?.into_iter().next().ok_or_else(|| {
            FixtureError::Unexpected(format!("no deployment in {}", self.path.display()))
        })
    }

    /// The checked-out root of a deployment.
    pub fn deployment_dir(&self, deployment: &Deployment) -> PathBuf {
        self.path
            .join("ostree/deploy")
            .join(&deployment.os)
            .join("deploy")
            .join(format!("{}.{}", deployment.commit, deployment.serial))
    }

    /// Commits `version` on the OS repository (see [`OsRepo::commit_version`]).
    pub fn publish(&self, version: &str) -> Result<String> {
        self.os.commit_version(version)
    }

    /// Clears the immutable flag ostree sets on deployment roots, so the directory can be
    /// removed. Runs on drop too.
    pub fn release_immutable(&self) -> Result<()> {
        release_immutable(&self.path)
    }
}

/// Clears the immutable flag `ostree admin deploy` sets on every deployment root of the
/// sysroot at `sysroot` (`ostree/deploy/*/deploy/*`).
pub fn release_immutable(sysroot: &Path) -> Result<()> {
    let Ok(oses) = fs::read_dir(sysroot.join("ostree/deploy")) else {
        return Ok(());
    };
    for os in oses.flatten() {
        let Ok(entries) = fs::read_dir(os.path().join("deploy")) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                Tool::new("chattr").arg("-i").arg(entry.path()).run()?;
            }
        }
    }
    Ok(())
}

/// Removes `dir` with everything in it, first releasing the deployments of any sysroot below
/// it (found as `…/ostree/deploy`).
pub fn remove_tree_with_sysroots(dir: &Path) -> Result<()> {
    let walker = walkdir::WalkDir::new(dir).follow_links(false).max_depth(8);
    for entry in walker.into_iter().flatten() {
        if entry.file_type().is_dir()
            && entry.file_name() == "deploy"
            && entry.path().parent().is_some_and(|p| p.ends_with("ostree"))
        {
            if let Some(sysroot) = entry.path().parent().and_then(Path::parent) {
                release_immutable(sysroot)?;
            }
        }
    }
    fs::remove_dir_all(dir).at("remove", dir)
}

impl Drop for Sysroot {
    fn drop(&mut self) {
        if let Err(e) = self.release_immutable() {
            eprintln!(
                "warning: cannot clear immutable flags under {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Parses `ostree admin status`.
pub fn parse_status(text: &str) -> Result<Vec<Deployment>> {
    let mut deployments: Vec<Deployment> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with("    ") {
            let Some(current) = deployments.last_mut() else {
                continue;
            };
            let detail = line.trim();
            if let Some(v) = detail.strip_prefix("Version:") {
                current.version = Some(v.trim().to_string());
            } else if let Some(r) = detail.strip_prefix("origin refspec:") {
                current.origin_refspec = Some(r.trim().to_string());
            }
            continue;
        }
        let booted = line.starts_with('*');
        let mut words = line.trim_start_matches(['*', ' ']).split_whitespace();
        let (Some(os), Some(id)) = (words.next(), words.next()) else {
            return Err(FixtureError::Unexpected(format!(
                "odd `ostree admin status` line: {line}"
            )));
        };
        let (commit, serial) = id
            .rsplit_once('.')
            .and_then(|(c, s)| Some((c.to_string(), s.parse().ok()?)))
            .ok_or_else(|| FixtureError::Unexpected(format!("odd deployment id {id}")))?;
        deployments.push(Deployment {
            os: os.to_string(),
            commit,
            serial,
            version: None,
            origin_refspec: None,
            booted,
            flags: words.map(str::to_string).collect(),
        });
    }
    Ok(deployments)
}

fn write(path: &Path, content: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).at("create directory", parent)?;
    }
    fs::write(path, content).at("write", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_admin_status() {
        let text = "* exampleos 1111111111111111111111111111111111111111111111111111111111111111.1 (pending)\n    Version: 1.1\n    origin refspec: exampleos:exampleos/x86_64/stable\n  exampleos 2222222222222222222222222222222222222222222222222222222222222222.0 (rollback)\n    Version: 1.0\n";
        let d = parse_status(text).unwrap();
        assert_eq!(d.len(), 2);
        assert!(d[0].booted);
        assert_eq!(d[0].serial, 1);
        assert_eq!(d[0].version.as_deref(), Some("1.1"));
        assert_eq!(d[0].flags, vec!["(pending)"]);
        assert_eq!(
            d[0].origin_refspec.as_deref(),
            Some("exampleos:exampleos/x86_64/stable")
        );
        assert!(!d[1].booted);
        assert_eq!(d[1].commit, "2".repeat(64));
    }
}
