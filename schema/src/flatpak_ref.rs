//! Flatpak ref names, split into their parts.

/// The parts of `app/ID/ARCH/BRANCH` or `runtime/ID/ARCH/BRANCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlatpakRef<'a> {
    pub is_app: bool,
    pub id: &'a str,
    pub arch: &'a str,
    pub branch: &'a str,
}

impl<'a> FlatpakRef<'a> {
    pub fn parse(ref_name: &'a str) -> Option<Self> {
        let mut parts = ref_name.split('/');
        let kind = parts.next()?;
        let (id, arch, branch) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [id, arch, branch].iter().any(|p| p.is_empty()) {
            return None;
        }
        let is_app = match kind {
            "app" => true,
            "runtime" => false,
            _ => return None,
        };
        Some(Self {
            is_app,
            id,
            arch,
            branch,
        })
    }

    /// Whether `ref_name` names a locale extension (`runtime/<ID>.Locale/…`), which Flatpak
    /// installs with only the languages in use.
    pub fn is_locale_extension(ref_name: &str) -> bool {
        FlatpakRef::parse(ref_name)
            .is_some_and(|parsed| !parsed.is_app && parsed.id.ends_with(".Locale"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_refs() {
        let parsed = FlatpakRef::parse("app/org.example.App/x86_64/stable").expect("app ref");
        assert!(parsed.is_app);
        assert_eq!(
            (parsed.id, parsed.arch, parsed.branch),
            ("org.example.App", "x86_64", "stable")
        );
        assert!(
            !FlatpakRef::parse("runtime/org.example.Platform/aarch64/23.08")
                .expect("runtime ref")
                .is_app
        );
        for bad in [
            "exampleos/x86_64/stable",
            "app/a/b",
            "app/a/b/c/d",
            "app//x/y",
        ] {
            assert_eq!(FlatpakRef::parse(bad), None, "{bad}");
        }
    }
}
