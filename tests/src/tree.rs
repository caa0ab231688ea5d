//! Directory trees to commit: the standard tree with every kind of entry OSTree stores, the
//! "many files" tree, and edits for a second commit.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cmd::is_root;
use crate::error::{IoContext, Result};
use crate::generate::{generate_tree, rewrite_files, GenSpec, GenStats};

/// Paths and contents of the standard tree, for assertions.
pub mod standard {
    pub const HELLO: &str = "usr/share/hello.txt";
    pub const HELLO_V1: &str = "hello\n";
    pub const HELLO_V2: &str = "hello, second commit\n";
    pub const EXECUTABLE: &str = "usr/bin/hi";
    pub const SYMLINK: &str = "usr/share/link";
    pub const SYMLINK_TARGET: &str = "hello.txt";
    pub const ABSOLUTE_SYMLINK: &str = "bin";
    pub const ABSOLUTE_SYMLINK_TARGET: &str = "/usr/bin";
    pub const EMPTY_DIR: &str = "usr/share/empty";
    pub const XATTR_FILE: &str = "usr/share/xattr.txt";
    pub const XATTR_FILE_CONTENT: &str = "x\n";
    pub const XATTR_NAME: &str = "user.test";
    pub const XATTR_VALUE_V1: &[u8] = b"value1";
    pub const XATTR_VALUE_V2: &[u8] = b"value2";
    pub const DEEP_FILE: &str = "usr/share/nested/a/b/c/deep.txt";
    pub const PRIVATE_FILE: &str = "usr/lib/private.conf";
    pub const OWNED_FILE: &str = "usr/share/owned.txt";
    pub const OWNER_UID: u32 = 4242;
    pub const OWNER_GID: u32 = 4343;
    /// Added by [`super::Tree::modify_for_second_commit`].
    pub const ADDED_IN_V2: &str = "usr/share/added-in-v2.txt";
    /// Sub-directory of the "many files" tree holding the generated files.
    pub const DATA_DIR: &str = "usr/share/data";
    /// Added by [`super::Tree::add_storage_edge_cases`]: spans many compression chunks.
    pub const LARGE_FILE: &str = "usr/lib/big.bin";
    /// Added by [`super::Tree::add_storage_edge_cases`]: a symlink across directories.
    pub const RELATIVE_SYMLINK: &str = "usr/bin/relative-link";
    pub const RELATIVE_SYMLINK_TARGET: &str = "../share/hello.txt";
    /// Added by [`super::Tree::add_storage_edge_cases`]: a second xattr, with a binary value.
    pub const BINARY_XATTR_NAME: &str = "user.other";
    pub const BINARY_XATTR_VALUE: &[u8] = b"\x00\x01binary";
}

/// What the standard tree contains beyond plain files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeOptions {
    /// A file with a `user.*` extended attribute.
    pub xattrs: bool,
    /// A file owned by another user and group (needs root).
    pub foreign_owner: bool,
}

impl TreeOptions {
    /// Everything: xattrs, and a foreign owner when running as root.
    pub fn full() -> TreeOptions {
        TreeOptions {
            xattrs: true,
            foreign_owner: is_root(),
        }
    }

    /// No xattrs and one owner, as Flatpak and `bare-user-only` repositories want.
    pub fn plain() -> TreeOptions {
        TreeOptions {
            xattrs: false,
            foreign_owner: false,
        }
    }
}

/// A directory tree on disk.
#[derive(Debug, Clone)]
pub struct Tree {
    pub root: PathBuf,
    pub options: TreeOptions,
    /// Set for trees made by [`Tree::many_files`]: the generated part under `usr/share/data`.
    pub generated: Option<(GenSpec, GenStats)>,
}

impl Tree {
    /// The standard tree under `dir` (created): an executable, a relative and an absolute
    /// symlink, an empty directory, nested directories, a 0600 file and, per `options`, a file
    /// with a `user.*` xattr and a file owned by 4242:4343.
    pub fn standard(dir: &Path, options: TreeOptions) -> Result<Tree> {
        let tree = Tree {
            root: dir.to_path_buf(),
            options,
            generated: None,
        };
        use standard::*;
        fs::create_dir_all(dir.join(EMPTY_DIR)).at("create directory", dir.join(EMPTY_DIR))?;
        fs::create_dir_all(dir.join("etc")).at("create directory", dir.join("etc"))?;
        tree.write_file(HELLO, HELLO_V1)?;
        tree.write_file(EXECUTABLE, "#!/bin/sh\necho hi\n")?;
        tree.set_mode(EXECUTABLE, 0o755)?;
        tree.symlink(SYMLINK, SYMLINK_TARGET)?;
        tree.symlink(ABSOLUTE_SYMLINK, ABSOLUTE_SYMLINK_TARGET)?;
        tree.write_file(DEEP_FILE, "deep\n")?;
        tree.write_file(PRIVATE_FILE, "secret=1\n")?;
        tree.set_mode(PRIVATE_FILE, 0o600)?;
        tree.write_file("etc/os-config", "setting=1\n")?;
        tree.write_file(XATTR_FILE, XATTR_FILE_CONTENT)?;
        if options.xattrs {
            tree.set_xattr(XATTR_FILE, XATTR_NAME, XATTR_VALUE_V1)?;
        }
        if options.foreign_owner {
            tree.write_file(OWNED_FILE, "owned\n")?;
            tree.chown(OWNED_FILE, OWNER_UID, OWNER_GID)?;
        }
        Ok(tree)
    }

    /// The standard tree plus the generated files of [`GenSpec::many_files`] under
    /// `usr/share/data`.
    pub fn many_files(dir: &Path, options: TreeOptions, seed: u64) -> Result<Tree> {
        Self::with_generated(dir, options, GenSpec::many_files(seed))
    }

    /// The standard tree plus files generated from `spec` under `usr/share/data`.
    pub fn with_generated(dir: &Path, options: TreeOptions, spec: GenSpec) -> Result<Tree> {
        let mut tree = Self::standard(dir, options)?;
        let stats = generate_tree(&dir.join(standard::DATA_DIR), &spec)?;
        tree.generated = Some((spec, stats));
        Ok(tree)
    }

    /// Adds what stresses object storage: an empty 0600 file, a group-writable file, a
    /// 600 KB incompressible file (many compression chunks), twenty small files of growing
    /// size, a relative symlink across directories and, with xattrs, a second xattr with a
    /// binary value.
    pub fn add_storage_edge_cases(&self) -> Result<()> {
        use standard::*;
        self.write_file("etc/empty-file", "")?;
        self.set_mode("etc/empty-file", 0o600)?;
        self.write_file("etc/group-writable", "gw\n")?;
        self.set_mode("etc/group-writable", 0o664)?;
        let mut large = vec![0u8; 600_000];
        ChaCha8Rng::seed_from_u64(0x00b1_ec70).fill_bytes(&mut large);
        self.write_file(LARGE_FILE, &large)?;
        for index in 0..20 {
            self.write_file(
                format!("usr/lib/many/file{index:02}"),
                format!("file {index}\n").repeat(index + 1),
            )?;
        }
        self.symlink(RELATIVE_SYMLINK, RELATIVE_SYMLINK_TARGET)?;
        if self.options.xattrs {
            self.set_xattr(XATTR_FILE, BINARY_XATTR_NAME, BINARY_XATTR_VALUE)?;
        }
        Ok(())
    }

    /// Changes for a second commit: new content for `hello.txt`, a file added, the deep file
    /// removed, a new xattr value, and (for generated trees) `rewritten` generated files given
    /// new content. Returns the relative paths of the generated files it rewrote.
    pub fn modify_for_second_commit(&self, rewritten: usize) -> Result<Vec<PathBuf>> {
        use standard::*;
        self.write_file(HELLO, HELLO_V2)?;
        self.write_file(ADDED_IN_V2, "new in the second commit\n")?;
        self.remove(DEEP_FILE)?;
        if self.options.xattrs {
            self.set_xattr(XATTR_FILE, XATTR_NAME, XATTR_VALUE_V2)?;
        }
        match &self.generated {
            Some((spec, _)) => {
                let data = self.root.join(DATA_DIR);
                let changed = rewrite_files(&data, spec, rewritten, spec.seed ^ 0x5eed_0002)?;
                Ok(changed
                    .into_iter()
                    .map(|p| Path::new(DATA_DIR).join(p))
                    .collect())
            }
            None => Ok(Vec::new()),
        }
    }

    /// Absolute path of `rel` in the tree.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// Writes a file (creating parent directories), mode 0644.
    pub fn write_file(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> Result<()> {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).at("create directory", parent)?;
        }
        fs::write(&path, content).at("write", &path)
    }

    pub fn set_mode(&self, rel: impl AsRef<Path>, mode: u32) -> Result<()> {
        let path = self.path(rel);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).at("chmod", &path)
    }

    pub fn symlink(&self, rel: impl AsRef<Path>, target: impl AsRef<Path>) -> Result<()> {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).at("create directory", parent)?;
        }
        symlink(target, &path).at("create symlink", &path)
    }

    pub fn set_xattr(&self, rel: impl AsRef<Path>, name: &str, value: &[u8]) -> Result<()> {
        let path = self.path(rel);
        xattr::set(&path, name, value).at("set xattr on", &path)
    }

    pub fn chown(&self, rel: impl AsRef<Path>, uid: u32, gid: u32) -> Result<()> {
        let path = self.path(rel);
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).at("chown", &path)
    }

    /// Removes a file, symlink or whole directory.
    pub fn remove(&self, rel: impl AsRef<Path>) -> Result<()> {
        let path = self.path(rel);
        let meta = fs::symlink_metadata(&path).at("stat", &path)?;
        if meta.is_dir() {
            fs::remove_dir_all(&path).at("remove directory", &path)
        } else {
            fs::remove_file(&path).at("remove", &path)
        }
    }
}
