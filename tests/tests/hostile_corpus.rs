//! The hostile corpus: one test per crafted input (generators in `ferry_tests::hostile`), each
//! checked by `hostile::expect_refused`: `ferryctl pull` refuses it within a minute with one
//! error naming the source and the problem, the destination ref stays at 1.0, `ostree fsck`
//! passes, and nothing outside the destination changed. No case mounts anything.

use anyhow::Result;
use ferry_engine::object::MAX_METADATA_SIZE;
use ferry_tests::hostile::{self, expect_refused, Case, Oversized, Scene, WrongType};
use ferry_tests::ostree::{object_path_in, CommitSpec, ObjectKind};
use ferry_tests::tamper;
use ferry_tests::tree::standard;
use tempfile::TempDir;

/// Builds the scene, lets `make` craft the case, and checks the refusal.
fn refused(make: impl FnOnce(&Scene) -> Result<Case>) -> Result<()> {
    let tmp = TempDir::new()?;
    let scene = Scene::new(tmp.path())?;
    let case = make(&scene)?;
    expect_refused(&case)?;
    Ok(())
}

const UNSORTED: &str = "entries are not strictly sorted by name";
const DOT: &str = "it refers to a directory itself or its parent";
const NOT_NORMAL: &str = "not in normal form";
const NOT_REGULAR: &str = "it is not a regular file";
const SYMLINK: &str = "Too many levels of symbolic links";
const DAMAGED: &str = "is damaged (its bytes hash to";

// --- Metadata over the engine's caps (sparse files a byte over MAX_METADATA_SIZE).

#[test]
fn oversized_commit() -> Result<()> {
    refused(|s| {
        Ok(hostile::oversized(
            s,
            Oversized::Commit,
            hostile::oversized_len(MAX_METADATA_SIZE),
        )?
        .needle("larger than"))
    })
}

#[test]
fn oversized_dirtree() -> Result<()> {
    refused(|s| {
        Ok(hostile::oversized(
            s,
            Oversized::DirTree,
            hostile::oversized_len(MAX_METADATA_SIZE),
        )?
        .needle(".dirtree (/)")
        .needle("larger than"))
    })
}

#[test]
fn oversized_dirmeta() -> Result<()> {
    refused(|s| {
        Ok(hostile::oversized(
            s,
            Oversized::DirMeta,
            hostile::oversized_len(MAX_METADATA_SIZE),
        )?
        .needle(".dirmeta (/)")
        .needle("larger than"))
    })
}

#[test]
fn oversized_detached_metadata() -> Result<()> {
    refused(|s| {
        Ok(hostile::oversized(
            s,
            Oversized::DetachedMetadata,
            hostile::oversized_len(MAX_METADATA_SIZE),
        )?
        .needle("larger than"))
    })
}

#[test]
fn oversized_summary_from_a_peer() -> Result<()> {
    refused(|s| {
        Ok(
            hostile::oversized_summary(s, hostile::oversized_len(MAX_METADATA_SIZE))?
                .needle("summary is larger than"),
        )
    })
}

// --- Tree shapes.

#[test]
fn deeply_nested_tree() -> Result<()> {
    refused(|s| Ok(hostile::deep_tree(s, hostile::DEEP_LEVELS)?.needle("nests deeper")))
}

#[test]
fn dirtree_with_millions_of_entries() -> Result<()> {
    refused(|s| Ok(hostile::many_entries(s, hostile::MANY_ENTRIES)?.needle(UNSORTED)))
}

#[test]
fn duplicate_file_entries() -> Result<()> {
    refused(|s| Ok(hostile::bad_root_entries(s, &[b"a", b"a"], &[b"usr"])?.needle(UNSORTED)))
}

#[test]
fn file_and_directory_of_one_name() -> Result<()> {
    refused(|s| {
        Ok(hostile::bad_root_entries(s, &[b"usr"], &[b"usr"])?
            .needle("\"usr\" is both a file and a directory"))
    })
}

#[test]
fn duplicate_directory_entries() -> Result<()> {
    refused(|s| Ok(hostile::bad_root_entries(s, &[], &[b"usr", b"usr"])?.needle(UNSORTED)))
}

#[test]
fn unsorted_file_entries() -> Result<()> {
    refused(|s| Ok(hostile::bad_root_entries(s, &[b"b", b"a"], &[b"usr"])?.needle(UNSORTED)))
}

#[test]
fn unsorted_directory_entries() -> Result<()> {
    refused(|s| Ok(hostile::bad_root_entries(s, &[], &[b"var", b"usr"])?.needle(UNSORTED)))
}

#[test]
fn file_named_dot_dot() -> Result<()> {
    refused(|s| Ok(hostile::bad_root_entries(s, &[b".."], &[b"usr"])?.needle(DOT)))
}

#[test]
fn directory_named_dot_dot() -> Result<()> {
    refused(|s| Ok(hostile::bad_root_entries(s, &[], &[b"..", b"usr"])?.needle(DOT)))
}

#[test]
fn file_named_dot() -> Result<()> {
    refused(|s| Ok(hostile::bad_root_entries(s, &[b"."], &[b"usr"])?.needle(DOT)))
}

#[test]
fn name_with_a_slash() -> Result<()> {
    refused(|s| {
        Ok(hostile::bad_root_entries(s, &[b"a/b"], &[b"usr"])?
            .needle("invalid file name \"a/b\": it contains '/'"))
    })
}

#[test]
fn empty_name() -> Result<()> {
    refused(|s| {
        Ok(hostile::bad_root_entries(s, &[b""], &[b"usr"])?
            .needle("invalid file name \"\": it is empty"))
    })
}

#[test]
fn name_with_a_nul() -> Result<()> {
    refused(|s| Ok(hostile::bad_root_entries(s, &[b"a\0b"], &[b"usr"])?.needle(NOT_NORMAL)))
}

// --- Objects of the wrong type under a right name.

#[test]
fn dirmeta_stored_as_dirtree() -> Result<()> {
    refused(|s| {
        Ok(hostile::wrong_type(s, WrongType::DirMetaAsDirTree)?
            .needle(".dirtree (/)")
            .needle(NOT_NORMAL))
    })
}

#[test]
fn commit_stored_as_dirtree() -> Result<()> {
    refused(|s| {
        Ok(hostile::wrong_type(s, WrongType::CommitAsDirTree)?
            .needle(".dirtree (/)")
            .needle(NOT_NORMAL))
    })
}

#[test]
fn dirtree_stored_as_dirmeta() -> Result<()> {
    refused(|s| {
        Ok(hostile::wrong_type(s, WrongType::DirTreeAsDirMeta)?
            .needle(".dirmeta (/)")
            .needle(NOT_NORMAL))
    })
}

#[test]
fn dirtree_stored_as_content() -> Result<()> {
    refused(
        |s| Ok(hostile::wrong_type(s, WrongType::DirTreeAsContent)?.needle("content header is")),
    )
}

// --- What the drive's filesystem can do: symlinks, loops, FIFOs.

#[test]
fn filez_symlink_to_dev_zero() -> Result<()> {
    refused(|s| {
        let (drive, v2) = s.drive_with_v2(None)?;
        let object = hostile::content_object(&drive, &v2, standard::HELLO)?;
        hostile::replace_by_symlink(&object, std::path::Path::new("/dev/zero"))?;
        Ok(s.drive_case(&drive).needle(SYMLINK))
    })
}

#[test]
fn filez_symlink_leaving_the_drive() -> Result<()> {
    refused(|s| {
        let (drive, v2) = s.drive_with_v2(None)?;
        let object = hostile::content_object(&drive, &v2, standard::ADDED_IN_V2)?;
        let outside = hostile::copy_outside(s, &object)?;
        hostile::replace_by_symlink(&object, &outside)?;
        Ok(s.drive_case(&drive).needle(SYMLINK))
    })
}

#[test]
fn filez_fifo() -> Result<()> {
    refused(|s| {
        let (drive, v2) = s.drive_with_v2(None)?;
        hostile::replace_by_fifo(&hostile::content_object(&drive, &v2, standard::HELLO)?)?;
        Ok(s.drive_case(&drive).needle(NOT_REGULAR))
    })
}

#[test]
fn dirtree_fifo() -> Result<()> {
    refused(|s| {
        let (drive, v2) = s.drive_with_v2(None)?;
        let (root, _) = drive.repo.root_checksums(&v2)?;
        hostile::replace_by_fifo(&object_path_in(&drive.repo.path, &root, "dirtree"))?;
        Ok(s.drive_case(&drive).needle(NOT_REGULAR).listed())
    })
}

/// The drive's summary only ranks drives, but reading a FIFO would block before anything
/// else: the untrusted commit behind it must still be refused, in time.
#[test]
fn summary_fifo_on_the_drive() -> Result<()> {
    refused(|s| {
        let stranger = hostile::key(s, "stranger", "ed25519", "never", &[])?;
        let (drive, _) = s.drive_with_v2(Some(&stranger))?;
        hostile::replace_by_fifo(&drive.repo.path.join("summary"))?;
        Ok(s.drive_case(&drive).needle("does not trust").listed())
    })
}

#[test]
fn ref_fifo_on_the_drive() -> Result<()> {
    refused(|s| {
        let drive = s.drive("drive")?;
        let location = hostile::mirror_ref(hostile::COLLECTION);
        hostile::replace_by_fifo(&drive.repo.path.join(location.relative_path()))?;
        Ok(s.drive_case(&drive).needle("is not offered").listed())
    })
}

#[test]
fn config_fifo_on_the_drive() -> Result<()> {
    refused(|s| {
        let drive = s.drive("drive")?;
        hostile::replace_by_fifo(&drive.repo.path.join("config"))?;
        Ok(s.drive_case(&drive)
            .needle("no OSTree repository found")
            .listed())
    })
}

#[test]
fn commit_symlink_leaving_the_drive() -> Result<()> {
    refused(|s| {
        let (drive, v2) = s.drive_with_v2(None)?;
        let object = drive.repo.object_path(&v2, ObjectKind::Commit)?;
        let outside = hostile::copy_outside(s, &object)?;
        hostile::replace_by_symlink(&object, &outside)?;
        Ok(s.drive_case(&drive).needle(SYMLINK).listed())
    })
}

#[test]
fn objects_folder_symlink_loop() -> Result<()> {
    refused(|s| {
        let (drive, v2) = s.drive_with_v2(None)?;
        let folder = drive.repo.path.join("objects").join(&v2[..2]);
        std::fs::rename(&folder, folder.with_extension("moved"))?;
        std::os::unix::fs::symlink(&v2[..2], &folder)?;
        Ok(s.drive_case(&drive).needle(SYMLINK).listed())
    })
}

#[test]
fn repos_d_symlink_loop() -> Result<()> {
    refused(|s| {
        let drive = s.drive("drive")?;
        std::fs::remove_dir_all(&drive.repo.path)?;
        drive.add_repos_d_symlink("a", std::path::Path::new("b"))?;
        drive.add_repos_d_symlink("b", std::path::Path::new("a"))?;
        drive.add_repos_d_symlink("self", std::path::Path::new("self"))?;
        Ok(s.drive_case(&drive)
            .needle("no usable source")
            .needle(SYMLINK)
            .listed())
    })
}

#[test]
fn repos_d_pointing_back_at_the_drive() -> Result<()> {
    refused(|s| {
        let drive = s.drive("drive")?;
        std::fs::remove_dir_all(&drive.repo.path)?;
        drive.add_repos_d_symlink("root", std::path::Path::new("../.."))?;
        drive.add_repos_d_symlink("here", std::path::Path::new("."))?;
        Ok(s.drive_case(&drive)
            .needle("it is not an OSTree repository")
            .listed())
    })
}

#[test]
fn repo_symlink_leaving_the_drive() -> Result<()> {
    refused(|s| {
        s.commit_v2(Some(&s.key), |c| c)?;
        let drive = s.base.join("drive");
        std::fs::create_dir_all(drive.join(".ostree"))?;
        std::os::unix::fs::symlink(&s.server.path, drive.join(".ostree/repo"))?;
        Ok(s.case(drive.display().to_string())
            .needle("outside the drive")
            .listed())
    })
}

// --- Compressed content.

#[test]
fn truncated_zlib_stream() -> Result<()> {
    refused(|s| {
        let (drive, v2) = s.drive_with_v2(None)?;
        hostile::edit_content(&drive, &v2, standard::HELLO, |mut bytes| {
            bytes.truncate(bytes.len() - 3);
            bytes
        })?;
        Ok(s.drive_case(&drive).needle("incomplete deflate stream"))
    })
}

#[test]
fn truncated_archive_header() -> Result<()> {
    refused(|s| {
        let (drive, v2) = s.drive_with_v2(None)?;
        hostile::edit_content(&drive, &v2, standard::HELLO, |mut bytes| {
            bytes.truncate(10);
            bytes
        })?;
        Ok(s.drive_case(&drive).needle("truncated header"))
    })
}

#[test]
fn trailing_garbage_after_the_deflate_stream() -> Result<()> {
    refused(|s| {
        let (drive, v2) = s.drive_with_v2(None)?;
        hostile::edit_content(&drive, &v2, standard::HELLO, |mut bytes| {
            bytes.extend_from_slice(&[0x5a; 64]);
            bytes
        })?;
        Ok(s.drive_case(&drive)
            .needle("data follows the compressed content"))
    })
}

// --- Parent chains.

#[test]
fn parent_chain_looping_on_itself() -> Result<()> {
    refused(|s| Ok(hostile::parent_loop(s, 1)?.needle(DAMAGED)))
}

#[test]
fn parent_chain_looping_through_two_commits() -> Result<()> {
    refused(|s| Ok(hostile::parent_loop(s, 2)?.needle(DAMAGED)))
}

// --- Trust: what the README's "What Ferry refuses" lists.

#[test]
fn untrusted_key() -> Result<()> {
    refused(|s| {
        let stranger = hostile::key(s, "stranger", "ed25519", "never", &[])?;
        let (drive, _) = s.drive_with_v2(Some(&stranger))?;
        Ok(s.drive_case(&drive)
            .needle(stranger.fingerprint.clone())
            .needle("does not trust"))
    })
}

#[test]
fn unsigned_commit_for_a_signing_remote() -> Result<()> {
    refused(|s| {
        s.commit_v2(None, |c| c)?;
        Ok(s.drive_case(&s.drive("drive")?)
            .needle("has no GPG signature"))
    })
}

#[test]
fn signature_copied_from_another_commit() -> Result<()> {
    refused(|s| {
        let v2 = s.commit_v2(None, |c| c)?;
        let drive = s.drive("drive")?;
        std::fs::copy(
            object_path_in(&s.server.path, &s.v1, "commitmeta"),
            object_path_in(&drive.repo.path, &v2, "commitmeta"),
        )?;
        Ok(s.drive_case(&drive).needle("does not match its contents"))
    })
}

#[test]
fn altered_file_contents() -> Result<()> {
    refused(|s| {
        let (drive, v2) = s.drive_with_v2(None)?;
        tamper::tamper_content(&drive.repo, &v2, "/usr/share/hello.txt", b"hello", b"HACKD")?;
        Ok(s.drive_case(&drive)
            .needle("/usr/share/hello.txt")
            .needle("not to its name"))
    })
}

#[test]
fn altered_commit_keeping_its_signature() -> Result<()> {
    refused(|s| {
        let (drive, v2) = s.drive_with_v2(None)?;
        let path = object_path_in(&drive.repo.path, &v2, "commit");
        let mut bytes = std::fs::read(&path)?;
        let at = bytes
            .windows(6)
            .position(|w| w == b"second")
            .ok_or_else(|| anyhow::anyhow!("no subject"))?;
        bytes[at..at + 6].copy_from_slice(b"SECOND");
        let forged = tamper::store_metadata(&drive.repo, &bytes, "commit")?;
        std::fs::copy(
            object_path_in(&drive.repo.path, &v2, "commitmeta"),
            object_path_in(&drive.repo.path, &forged, "commitmeta"),
        )?;
        tamper::publish(
            &drive.repo,
            &hostile::mirror_ref(hostile::COLLECTION),
            &forged,
            None,
        )?;
        Ok(s.drive_case(&drive).needle("does not match its contents"))
    })
}

/// A key `origin` trusts as well as the publisher's, made by `make`, signing 2.0.
fn signed_by_also_trusted(
    s: &Scene,
    key: &ferry_tests::gpg::GpgKey,
    after_signing: impl FnOnce(&ferry_tests::gpg::GpgKey) -> Result<()>,
) -> Result<Case> {
    let (drive, _) = s.drive_with_v2(Some(key))?;
    after_signing(key)?;
    s.trust_also(&key.public_keyring)?;
    Ok(s.drive_case(&drive))
}

// Frozen (`!`): keys made and signatures made later in the test share one instant, so a slow
// key generation cannot date the key after its own signatures.
const IN_2020: &str = "faked-system-time 20200101T000000!";

#[test]
fn expired_key() -> Result<()> {
    refused(|s| {
        let old = hostile::key(s, "expired", "ed25519", "1d", &[IN_2020])?;
        Ok(signed_by_also_trusted(s, &old, |_| Ok(()))?.needle("which expired on 2020-01-02"))
    })
}

#[test]
fn expired_subkey() -> Result<()> {
    refused(|s| {
        let mut key = hostile::key(s, "expired-sub", "ed25519", "never", &[IN_2020])?;
        let subkey = key.add_subkey("ed25519", "sign", "1d")?;
        Ok(signed_by_also_trusted(s, &key, |_| Ok(()))?
            .needle(subkey)
            .needle("expired"))
    })
}

#[test]
fn revoked_key() -> Result<()> {
    refused(|s| {
        let key = hostile::key(s, "revoked", "ed25519", "never", &[])?;
        Ok(signed_by_also_trusted(s, &key, |k| Ok(k.revoke()?))?.needle("revoked"))
    })
}

#[test]
fn revoked_subkey() -> Result<()> {
    refused(|s| {
        let mut key = hostile::key(s, "revoked-sub", "ed25519", "never", &[])?;
        let subkey = key.add_subkey("ed25519", "sign", "never")?;
        Ok(signed_by_also_trusted(s, &key, |k| {
            Ok(k.edit_key(&["key 1", "revkey", "y", "0", "", "y", "save"])?)
        })?
        .needle(subkey)
        .needle("revoked"))
    })
}

#[test]
fn subkey_no_longer_allowed_to_sign() -> Result<()> {
    refused(|s| {
        let mut key = hostile::key(s, "usage", "ed25519", "never", &[])?;
        let subkey = key.add_subkey("ed25519", "sign", "never")?;
        Ok(signed_by_also_trusted(s, &key, |k| {
            Ok(k.edit_key(&["key 1", "change-usage", "S", "A", "Q", "save"])?)
        })?
        .needle(subkey)
        .needle("not allowed to sign"))
    })
}

/// The destination's keyring claims a thief's signing subkey for the publisher's key; the
/// subkey's binding signature is the thief's, so it binds nothing to the publisher.
#[test]
fn subkey_not_bound_to_the_trusted_key() -> Result<()> {
    refused(|s| {
        let mut thief = hostile::key(s, "thief", "ed25519", "never", &[])?;
        let subkey = thief.add_subkey("ed25519", "sign", "never")?;
        let (drive, _) = s.drive_with_v2(Some(&thief))?;
        s.key
            .graft_subkeys_of(&thief, &s.dest.path.join("origin.trustedkeys.gpg"))?;
        Ok(s.drive_case(&drive).needle(subkey))
    })
}

#[test]
fn sha1_signature() -> Result<()> {
    refused(|s| {
        let key = hostile::key(
            s,
            "sha1",
            "rsa2048",
            "never",
            &["digest-algo SHA1", "personal-digest-preferences SHA1"],
        )?;
        Ok(signed_by_also_trusted(s, &key, |_| Ok(()))?.needle("SHA1"))
    })
}

#[test]
fn signature_dated_in_the_future() -> Result<()> {
    refused(|s| {
        let key = hostile::key(s, "future", "ed25519", "never", &[])?;
        key.set_conf(&["faked-system-time 20990101T000000"])?;
        Ok(signed_by_also_trusted(s, &key, |k| Ok(k.set_conf(&[])?))?.needle("2099-01-01"))
    })
}

#[test]
fn expired_signature() -> Result<()> {
    refused(|s| {
        let key = hostile::key(
            s,
            "sigexp",
            "ed25519",
            "never",
            &[IN_2020, "default-sig-expire 1d"],
        )?;
        Ok(signed_by_also_trusted(s, &key, |_| Ok(()))?.needle("expired"))
    })
}

#[test]
fn commit_bound_to_another_collection() -> Result<()> {
    refused(|s| {
        s.commit_v2(Some(&s.key), |c: CommitSpec<'_>| {
            c.arg("--no-bindings")
                .metadata("ostree.collection-binding", hostile::OTHER_COLLECTION)
                .arg(format!(
                    "--add-metadata=ostree.ref-binding=['{}']",
                    hostile::BRANCH
                ))
        })?;
        // `create-usb` itself refuses such commits: the publisher's repository is the source.
        Ok(s.case(s.server.path.display().to_string()).needle(format!(
            "belongs to collection {}",
            hostile::OTHER_COLLECTION
        )))
    })
}

#[test]
fn commit_bound_to_another_ref() -> Result<()> {
    refused(|s| {
        s.commit_v2(Some(&s.key), |c: CommitSpec<'_>| {
            c.arg("--no-bindings")
                .metadata("ostree.collection-binding", hostile::COLLECTION)
                .arg("--add-metadata=ostree.ref-binding=['os/x86_64/other']")
        })?;
        Ok(s.case(s.server.path.display().to_string())
            .needle("is bound to os/x86_64/other"))
    })
}

#[test]
fn downgrade_without_allow_downgrade() -> Result<()> {
    refused(|s| {
        s.commit_v2(Some(&s.key), |c: CommitSpec<'_>| {
            c.timestamp("2020-01-01 00:00:00")
        })?;
        Ok(s.drive_case(&s.drive("drive")?).needle("--allow-downgrade"))
    })
}

#[test]
fn unknown_collection() -> Result<()> {
    refused(|s| {
        let other = ferry_tests::ostree::OstreeRepo::init(
            &s.base.join("other-server"),
            ferry_tests::ostree::RepoMode::Archive,
            Some(hostile::OTHER_COLLECTION),
        )?;
        other.commit(&CommitSpec::new(hostile::BRANCH, &s.tree.root).sign(&s.key))?;
        other.create_usb(
            &s.base.join("drive"),
            &[(hostile::OTHER_COLLECTION, hostile::BRANCH)],
        )?;
        let mut case = s.case(s.base.join("drive").display().to_string());
        case.extra = vec!["--mirror".into()];
        case.location = hostile::mirror_ref(hostile::OTHER_COLLECTION);
        case.before = None;
        // The drive is fine; what is missing is the destination's remote for the collection.
        case.names_source = false;
        let dest = s.dest.path.display().to_string();
        Ok(case.needle(dest).needle("add the remote first"))
    })
}
