//! A fake sysroot seen as a booted OSTree system, without booting it (root only).
//!
//! libostree (2022.7, `ostree_sysroot_initialize` and `parse_deployment`) calls a sysroot
//! booted when `/run/ostree-booted` exists and the sysroot is `/` (same device and inode), and
//! the booted deployment is the one whose directory has the device and inode of `/`. So each
//! command runs in its own mount and PID namespace (`unshare`), in which a bind mount of the
//! deployment directory becomes the root (`chroot`), with the physical sysroot at `/sysroot`
//! and `/boot` and the stateroot's `var` at `/var` (as `ostree-prepare-root` mounts them), the
//! host's `/usr` (read-only) for the programs, the host's `/dev`, a `/run` kept between
//! commands in a directory of the test, and a tmpfs `/tmp` with the workspace's binaries at
//! [`BIN_DIR`]. `/proc` is the PID namespace's own: `ostree admin` reads `/proc/1/ns/mnt` on a
//! booted system, which a container may forbid for the host's PID 1. The deployment must come
//! from a tree with [`crate::sysroot::OsRepo::add_root_layout`], which provides the mount
//! points and the `/ostree` link. The mounts end with the namespace when the command exits
//! (`--kill-child` ends it when `unshare` itself is killed), so nothing outlives a command,
//! even a failed one.

use std::fs;
use std::path::{Path, PathBuf};

use crate::bins;
use crate::cmd::Tool;
use crate::error::{FixtureError, IoContext, Result};
use crate::sysroot::{Deployment, Sysroot};

/// Where the workspace's binaries are inside.
pub const BIN_DIR: &str = "/tmp/ferry-bin";

/// `$1` root mount point, `$2` physical sysroot, `$3` deployment directory, `$4` the
/// stateroot's `var`, `$5` run directory, `$6` workspace binaries; then pairs of host
/// directory and directory under `/tmp` to bind, `--`, and the command with its `NAME=value`
/// variables first.
const ENTER_SCRIPT: &str = r#"set -eu
root=$1 sysroot=$2 deployment=$3 var=$4 run=$5 bins=$6
shift 6
mount --bind "$deployment" "$root"
mount --bind "$sysroot" "$root/sysroot"
mount --bind "$sysroot/boot" "$root/boot"
mount --bind "$var" "$root/var"
mount --bind -o ro /usr "$root/usr"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --bind "$run" "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
mkdir "$root/tmp/ferry-bin"
mount --bind -o ro "$bins" "$root/tmp/ferry-bin"
while [ "$1" != -- ]; do
    mkdir -p "$root/tmp/$2"
    mount --bind "$1" "$root/tmp/$2"
    shift 2
done
shift
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin LC_ALL=C.UTF-8 "$@"
"#;

/// One deployment of a sysroot, run as the booted system.
#[derive(Debug, Clone)]
pub struct BootedSystem {
    sysroot: PathBuf,
    deployment: PathBuf,
    root: PathBuf,
    run: PathBuf,
    binds: Vec<(PathBuf, String)>,
}

impl BootedSystem {
    /// `booted` of `sysroot` as the running system; `base/booted-root` is the root's mount
    /// point and `base/booted-run` its `/run`, with `ostree-booted` in it.
    pub fn new(base: &Path, sysroot: &Sysroot, booted: &Deployment) -> Result<BootedSystem> {
        crate::cmd::require_root("a booted system (mount and PID namespaces, chroot)")?;
        let deployment = sysroot.deployment_dir(booted);
        for needed in ["sysroot", "boot", "var", "proc", "run", "dev", "tmp", "usr"] {
            if !deployment.join(needed).is_dir() {
                return Err(FixtureError::Unexpected(format!(
                    "{} has no {needed}/ to mount on: commit the OS with \
                     OsRepo::add_root_layout",
                    deployment.display()
                )));
            }
        }
        let root = base.join("booted-root");
        let run = base.join("booted-run");
        for dir in [&root, &run] {
            fs::create_dir_all(dir).at("create directory", dir)?;
        }
        let marker = run.join("ostree-booted");
        fs::write(&marker, "").at("write", &marker)?;
        Ok(BootedSystem {
            sysroot: sysroot.path.clone(),
            deployment,
            root,
            run,
            binds: Vec::new(),
        })
    }

    /// Also binds the host directory `host` at `/tmp/<inside>`.
    pub fn bind(mut self, host: &Path, inside: &str) -> Self {
        self.binds.push((host.to_owned(), inside.to_owned()));
        self
    }

    /// `ostree/deploy/<stateroot>/var`, two levels above the deployment directory.
    fn stateroot_var(&self) -> PathBuf {
        let stateroot = self
            .deployment
            .ancestors()
            .nth(2)
            .unwrap_or(&self.deployment);
        stateroot.join("var")
    }

    /// The host directory that is `/run` inside (`ostree/staged-deployment` is written there).
    pub fn run_dir(&self) -> &Path {
        &self.run
    }

    /// `program` run inside with only `PATH`, `LC_ALL=C.UTF-8` and `vars` set; add its
    /// arguments to the returned command.
    pub fn command(&self, vars: &[(&str, &str)], program: &str) -> Result<Tool> {
        let mut tool = Tool::new("unshare")
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", ENTER_SCRIPT, "sh"])
            .arg(&self.root)
            .arg(&self.sysroot)
            .arg(&self.deployment)
            .arg(self.stateroot_var())
            .arg(&self.run)
            .arg(bins::bin_dir()?);
        for (host, inside) in &self.binds {
            tool = tool.arg(host).arg(inside);
        }
        tool = tool.arg("--");
        for (name, value) in vars {
            tool = tool.arg(format!("{name}={value}"));
        }
        Ok(tool.arg(program))
    }

    /// `ostree admin SUBCOMMAND` inside, on the booted sysroot `/`.
    pub fn admin(&self, subcommand: &str) -> Result<Tool> {
        Ok(self.command(&[], "ostree")?.args(["admin", subcommand]))
    }

    /// The deployments as `ostree admin status` shows them inside (booted one marked, staged
    /// one first).
    pub fn deployments(&self) -> Result<Vec<Deployment>> {
        crate::sysroot::parse_status(&self.admin("status")?.stdout()?)
    }

    /// The workspace's `ferryctl` inside, with `vars`.
    pub fn ferryctl(&self, vars: &[(&str, &str)]) -> Result<Tool> {
        bins::binary("ferryctl")?;
        self.command(vars, &format!("{BIN_DIR}/ferryctl"))
    }
}
