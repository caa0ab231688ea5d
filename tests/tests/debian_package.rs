//! The Debian package: `dpkg-buildpackage` with `debian/` (packing the binaries this build made,
//! `FERRY_PREBUILT`), `lintian` without errors, exact dependencies, and `dpkg -i` then
//! `dpkg -r` and `dpkg -P` on this machine leaving no file of the package behind (a removed
//! package keeps its conffiles until it is purged, as Debian policy says).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use ferry_tests::bins;
use ferry_tests::cmd::{require_root, Tool};
use tempfile::TempDir;

const PACKAGE: &str = "ferry";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The paths (files and symlinks, not directories) the package carries, from `dpkg-deb -c`.
fn packaged_files(deb: &Path) -> Result<BTreeSet<PathBuf>> {
    let listing = Tool::new("dpkg-deb").arg("-c").arg(deb).stdout()?;
    let mut files = BTreeSet::new();
    for line in listing.lines() {
        // drwxr-xr-x root/root 0 2026-12-06 07:29 ./usr/bin/  (symlinks end with " -> target")
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        if line.starts_with('d') {
            continue;
        }
        files.insert(PathBuf::from(path.trim_start_matches('.')));
    }
    Ok(files)
}

fn installed(package: &str) -> bool {
    Tool::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| out.success() && out.stdout.contains("installed"))
}

#[test]
fn serial_the_debian_package_builds_passes_lintian_and_installs_and_removes_cleanly() -> Result<()>
{
    require_root("dpkg -i")?;
    for tool in ["dpkg-buildpackage", "lintian", "dh"] {
        ensure!(
            Tool::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()?
                .success(),
            "{tool} is missing: run scripts/install-deps.sh"
        );
    }
    ensure!(
        !installed(PACKAGE),
        "the {PACKAGE} package is installed on this machine already; this test installs and \
         removes it, so remove it first (dpkg -r {PACKAGE})"
    );
    let tmp = TempDir::new()?;
    let source = tmp.path().join("ferry");
    std::fs::create_dir_all(&source)?;
    let root = repo_root();
    for part in ["Makefile", "debian", "data", "po", "scripts", "udev-rules"] {
        Tool::new("cp")
            .arg("-a")
            .arg(root.join(part))
            .arg(&source)
            .run()?;
    }
    let binaries = bins::bin_dir()?;
    for binary in ["ferry", "ferryctl", "ferry-hook"] {
        bins::binary(binary)?;
    }
    Tool::new("dpkg-buildpackage")
        .args(["-b", "-us", "-uc", "-d"])
        .current_dir(&source)
        .env("FERRY_PREBUILT", &binaries)
        .env("DEB_BUILD_OPTIONS", "noddebs")
        .run()?;
    let version = env!("CARGO_PKG_VERSION");
    let deb = tmp.path().join(format!("{PACKAGE}_{version}_amd64.deb"));
    ensure!(deb.is_file(), "no {}", deb.display());

    let lintian = Tool::new("lintian")
        .args(["--fail-on", "error"])
        .arg(&deb)
        .output()?;
    ensure!(
        lintian.success() && !lintian.stdout.lines().any(|l| l.starts_with("E: ")),
        "lintian:\n{}{}",
        lintian.stdout,
        lintian.stderr
    );

    let depends = Tool::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .arg("Depends")
        .stdout()?;
    let names: BTreeSet<&str> = depends
        .split(',')
        .filter_map(|item| item.split_whitespace().next())
        .collect();
    for needed in [
        "ostree",
        "flatpak",
        "libgtk-4-1",
        "libadwaita-1-0",
        "polkitd",
        "pkexec",
        "libudev1",
        "libc6",
    ] {
        ensure!(names.contains(needed), "Depends lacks {needed}: {depends}");
    }

    let files = packaged_files(&deb)?;
    for expected in [
        "/usr/bin/ferry",
        "/usr/bin/ferryctl",
        "/usr/libexec/ferry-hook",
        "/lib/udev/rules.d/90-ferry.rules",
        "/lib/systemd/system/ferry-hook@.service",
        "/lib/systemd/system/ferry-nearby.timer",
        "/usr/share/polkit-1/actions/io.github.ferry.Ferry.policy",
        "/usr/share/metainfo/io.github.ferry.Ferry.metainfo.xml",
        "/usr/share/applications/io.github.ferry.Ferry.desktop",
        "/usr/share/man/man1/ferryctl.1.gz",
        "/usr/share/man/man5/ferry.conf.5.gz",
        "/usr/share/man/man8/ferry-hook.8.gz",
        "/usr/share/locale/de/LC_MESSAGES/ferry.mo",
        "/etc/ferry/ferry.conf",
    ] {
        ensure!(
            files.contains(Path::new(expected)),
            "{expected} is not in the package: {files:#?}"
        );
    }
    let already: Vec<_> = files
        .iter()
        .filter(|path| path.symlink_metadata().is_ok())
        .collect();
    ensure!(
        already.is_empty(),
        "files of the package exist on this machine already: {already:?}"
    );

    let conffiles: BTreeSet<PathBuf> = [PathBuf::from("/etc/ferry/ferry.conf")]
        .into_iter()
        .chain(
            files
                .iter()
                .filter(|path| path.starts_with("/etc"))
                .cloned(),
        )
        .collect();
    let result = (|| -> Result<()> {
        Tool::new("dpkg").arg("-i").arg(&deb).run()?;
        let version_line = Tool::new("/usr/bin/ferryctl").arg("--version").stdout()?;
        ensure!(version_line.contains(version), "{version_line}");
        let missing: Vec<_> = files
            .iter()
            .filter(|path| path.symlink_metadata().is_err())
            .collect();
        ensure!(missing.is_empty(), "not installed: {missing:?}");

        Tool::new("dpkg").args(["-r", PACKAGE]).run()?;
        let left: Vec<_> = files
            .iter()
            .filter(|path| !conffiles.contains(*path) && path.symlink_metadata().is_ok())
            .collect();
        ensure!(left.is_empty(), "dpkg -r left {left:?}");

        Tool::new("dpkg").args(["-P", PACKAGE]).run()?;
        let left: Vec<_> = files
            .iter()
            .filter(|path| path.symlink_metadata().is_ok())
            .collect();
        ensure!(left.is_empty(), "dpkg -P left {left:?}");
        ensure!(
            !Path::new("/etc/ferry").exists(),
            "/etc/ferry is left after purging"
        );
        Ok(())
    })();
    if installed(PACKAGE) || result.is_err() {
        // Never leave the package on the machine, whatever failed.
        let _ = Tool::new("dpkg").args(["-P", PACKAGE]).run();
    }
    result.context("the install round trip")
}
