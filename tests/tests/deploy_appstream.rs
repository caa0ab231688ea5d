//! Deploying AppStream data as root never goes through a symlink: not one in the pulled
//! tree (a catalogue pointing at a secret, a compressed catalogue pointing out of the
//! installation), nor one planted in the installation's `appstream/` directory.

use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use ferry_engine::deploy::deploy_appstream;
use ferry_engine::object::Checksum;
use ferry_engine::target::{FlatpakInstallation, FlatpakScope};
use ferry_tests::ostree::{CommitSpec, OstreeRepo, RepoMode};
use flate2::read::GzDecoder;
use tempfile::TempDir;

const REMOTE: &str = "origin";
const ARCH: &str = "x86_64";
const SECRET: &[u8] = b"root:$6$secret-hash:19000:0:99999:7:::\n";
const CATALOG: &str = "<components version=\"0.8\"></components>\n";

/// An installation directory with its repository, and a secret file outside it.
struct Scene {
    tmp: TempDir,
    installation: FlatpakInstallation,
    repo: OstreeRepo,
    secret: PathBuf,
}

impl Scene {
    fn new() -> Result<Self> {
        let tmp = TempDir::new()?;
        let path = tmp.path().join("installation");
        let repo = OstreeRepo::init(&path.join("repo"), RepoMode::BareUserOnly, None)?;
        let secret = tmp.path().join("outside/shadow");
        fs::create_dir_all(tmp.path().join("outside"))?;
        fs::write(&secret, SECRET)?;
        Ok(Self {
            tmp,
            installation: FlatpakInstallation {
                scope: FlatpakScope::Directory,
                path,
            },
            repo,
            secret,
        })
    }

    /// Commits the tree `fill` makes as the remote's AppStream branch.
    fn commit(&self, name: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<Checksum> {
        let tree = self.tmp.path().join(name);
        fs::create_dir_all(&tree)?;
        fill(&tree)?;
        let commit = self
            .repo
            .commit(&CommitSpec::new(&format!("appstream2/{ARCH}"), &tree))?;
        Ok(Checksum::from_hex(&commit)?)
    }

    fn arch_dir(&self) -> PathBuf {
        self.installation
            .path
            .join("appstream")
            .join(REMOTE)
            .join(ARCH)
    }

    fn secret_unchanged(&self) -> Result<()> {
        ensure!(
            fs::read(&self.secret)? == SECRET,
            "the file outside was changed"
        );
        Ok(())
    }
}

/// Every regular file under `dir` (gzipped ones inflated), none through a symlink.
fn contents(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            found.extend(contents(&entry.path())?);
        } else if kind.is_file() {
            let bytes = fs::read(entry.path())?;
            if entry.path().extension().is_some_and(|e| e == "gz") {
                let mut inflated = Vec::new();
                GzDecoder::new(bytes.as_slice()).read_to_end(&mut inflated)?;
                found.push(inflated);
            }
            found.push(bytes);
        }
    }
    Ok(found)
}

#[test]
fn a_symlinked_catalogue_in_the_pulled_tree_is_not_read() -> Result<()> {
    let scene = Scene::new()?;
    let secret = scene.secret.clone();
    let commit = scene.commit("tree", |tree| {
        symlink(&secret, tree.join("appstream.xml"))?;
        Ok(())
    })?;
    deploy_appstream(&scene.installation, REMOTE, ARCH, &commit)?;
    let checkout = scene.arch_dir().join(commit.to_string());
    ensure!(checkout.is_dir(), "the tree was not deployed");
    for bytes in contents(&checkout)? {
        ensure!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET),
            "the secret was copied into the AppStream directory"
        );
    }
    scene.secret_unchanged()
}

#[test]
fn a_symlinked_compressed_catalogue_in_the_pulled_tree_is_not_written_through() -> Result<()> {
    let scene = Scene::new()?;
    let planted = scene.tmp.path().join("outside/planted.gz");
    let target = planted.clone();
    let commit = scene.commit("tree", |tree| {
        fs::write(tree.join("appstream.xml"), CATALOG)?;
        symlink(&target, tree.join("appstream.xml.gz"))?;
        Ok(())
    })?;
    deploy_appstream(&scene.installation, REMOTE, ARCH, &commit)?;
    ensure!(
        !planted.exists(),
        "a file was created outside the installation"
    );
    let active = scene.arch_dir().join("active/appstream.xml");
    ensure!(fs::read_to_string(active)? == CATALOG);
    Ok(())
}

#[test]
fn a_symlinked_timestamp_in_the_destination_is_replaced_not_written_through() -> Result<()> {
    let scene = Scene::new()?;
    let commit = scene.commit("tree", |tree| {
        fs::write(tree.join("appstream.xml"), CATALOG)?;
        Ok(())
    })?;
    fs::create_dir_all(scene.arch_dir())?;
    symlink(&scene.secret, scene.arch_dir().join(".timestamp"))?;
    deploy_appstream(&scene.installation, REMOTE, ARCH, &commit)?;
    scene.secret_unchanged()?;
    let timestamp = fs::symlink_metadata(scene.arch_dir().join(".timestamp"))?;
    ensure!(timestamp.is_file(), ".timestamp is not a regular file");
    // A second deploy of the same commit only touches .timestamp: still not through a link.
    fs::remove_file(scene.arch_dir().join(".timestamp"))?;
    symlink(&scene.secret, scene.arch_dir().join(".timestamp"))?;
    deploy_appstream(&scene.installation, REMOTE, ARCH, &commit)?;
    scene.secret_unchanged()?;
    // The compressed catalogue was written too, as a regular file.
    let packed = fs::symlink_metadata(scene.arch_dir().join("active/appstream.xml.gz"))?;
    ensure!(packed.is_file());
    Ok(())
}

#[test]
fn a_symlinked_remote_directory_in_the_destination_is_refused() -> Result<()> {
    let scene = Scene::new()?;
    let commit = scene.commit("tree", |tree| {
        fs::write(tree.join("appstream.xml"), CATALOG)?;
        Ok(())
    })?;
    let elsewhere = scene.tmp.path().join("outside/elsewhere");
    fs::create_dir_all(&elsewhere)?;
    fs::create_dir_all(scene.installation.path.join("appstream"))?;
    symlink(
        &elsewhere,
        scene.installation.path.join("appstream").join(REMOTE),
    )?;
    let error = match deploy_appstream(&scene.installation, REMOTE, ARCH, &commit) {
        Ok(_) => anyhow::bail!("deployed through a symlink"),
        Err(error) => error.to_string(),
    };
    ensure!(error.contains("symlink"), "{error}");
    ensure!(
        fs::read_dir(&elsewhere)?.next().is_none(),
        "something was written into the directory the symlink points at"
    );
    Ok(())
}

#[test]
fn serial_appstream_data_larger_than_what_the_reserve_leaves_is_not_deployed() -> Result<()> {
    ferry_tests::require_root("a tmpfs holding the installation")?;
    let tmp = TempDir::new()?;
    let mount = ferry_tests::loopdev::Mount::tmpfs(&tmp.path().join("fs"), "16m")?;
    let installation = FlatpakInstallation {
        scope: FlatpakScope::Directory,
        path: mount.target.join("installation"),
    };
    let repo = OstreeRepo::init(
        &installation.path.join("repo"),
        RepoMode::BareUserOnly,
        None,
    )?;
    let tree = tmp.path().join("tree");
    fs::create_dir_all(&tree)?;
    // 6 MiB that do not compress, in a 16 MiB filesystem keeping 8 MB free.
    let noise: Vec<u8> = (0..6u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(tree.join("appstream.xml"), &noise)?;
    let commit = repo.commit(&CommitSpec::new(&format!("appstream2/{ARCH}"), &tree))?;
    repo.config_set("core.min-free-space-size", "8MB")?;
    let result = deploy_appstream(&installation, REMOTE, ARCH, &Checksum::from_hex(&commit)?);
    let error = match result {
        Ok(_) => anyhow::bail!("deployed into the reserve"),
        // What failed, then why (the repository's refusal is the cause).
        Err(error) => ferry_engine::causes::text(&error),
    };
    ensure!(error.contains("not enough free space"), "{error}");
    let arch_dir = installation.path.join("appstream").join(REMOTE).join(ARCH);
    ensure!(
        fs::read_dir(&arch_dir)?.next().is_none(),
        "something was checked out"
    );
    drop(repo);
    mount.unmount()?;
    Ok(())
}

#[test]
fn a_checkout_name_symlinked_out_of_the_destination_is_replaced_by_a_real_checkout() -> Result<()> {
    let scene = Scene::new()?;
    let commit = scene.commit("tree", |tree| {
        Ok(fs::write(tree.join("appstream.xml"), CATALOG)?)
    })?;
    // A directory outside with a forged catalogue, linked where the checkout goes.
    let forged = scene.tmp.path().join("outside/forged");
    fs::create_dir_all(&forged)?;
    fs::write(forged.join("appstream.xml"), "forged")?;
    let arch_dir = scene.arch_dir();
    fs::create_dir_all(&arch_dir)?;
    symlink(&forged, arch_dir.join(commit.to_string()))?;

    ensure!(deploy_appstream(
        &scene.installation,
        REMOTE,
        ARCH,
        &commit
    )?);

    ensure!(fs::symlink_metadata(arch_dir.join(commit.to_string()))?.is_dir());
    ensure!(fs::read_to_string(arch_dir.join("active/appstream.xml"))? == CATALOG);
    let outside: Vec<_> = fs::read_dir(&forged)?.collect::<Result<_, _>>()?;
    ensure!(
        outside.len() == 1,
        "written into the linked directory: {outside:?}"
    );
    ensure!(fs::read_to_string(forged.join("appstream.xml"))? == "forged");
    scene.secret_unchanged()
}
