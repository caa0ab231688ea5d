//! AppStream catalogs: display names, summaries and release versions of Flatpak apps, from a
//! remote's `appstream2/<arch>` branch (read by [`crate::resolve`]) or from the AppStream
//! file an installed app carries (read by [`crate::target`]). The XML is read with a
//! streaming reader, within limits on size, depth and entries.

use std::collections::HashMap;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use crate::object::FlatpakRef;

/// Largest AppStream document read, uncompressed.
pub(crate) const MAX_XML_BYTES: u64 = 64 * 1024 * 1024;
/// Largest compressed `appstream.xml.gz` read.
pub(crate) const MAX_XML_GZ_BYTES: u64 = 32 * 1024 * 1024;
/// Components beyond this many are ignored.
const MAX_COMPONENTS: usize = 200_000;
/// Elements nested deeper than this make the document invalid.
const MAX_DEPTH: usize = 64;
/// Longest release version kept.
const MAX_VERSION_BYTES: usize = 128;
/// Longest name or summary kept.
const MAX_TEXT_BYTES: usize = 4096;
/// Largest icon copied.
pub(crate) const MAX_ICON_BYTES: u64 = 1024 * 1024;

/// What AppStream says about one app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AppEntry {
    pub name: Option<String>,
    pub summary: Option<String>,
    /// The version of the newest `<release>` (by timestamp; the first one without).
    pub version: Option<String>,
}

/// The apps of one AppStream document, by Flatpak app ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Catalog {
    apps: HashMap<String, AppEntry>,
}

impl Catalog {
    pub fn get(&self, app_id: &str) -> Option<&AppEntry> {
        self.apps.get(app_id)
    }

    /// Parses an AppStream collection document.
    pub fn parse(xml: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::from_reader(xml);
        let mut catalog = Catalog::default();
        let mut stack: Vec<String> = Vec::new();
        let mut current: Option<Component> = None;
        let mut buf = Vec::new();
        loop {
            let event = reader
                .read_event_into(&mut buf)
                .map_err(|error| format!("malformed AppStream XML: {error}"))?;
            match event {
                Event::Start(start) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(format!("AppStream XML nests deeper than {MAX_DEPTH}"));
                    }
                    let name = start.local_name().as_ref().to_owned();
                    if name == "component" && current.is_none() {
                        current = Some(Component::new(stack.len()));
                    } else if let Some(component) = current.as_mut() {
                        component.open(&name, &start, stack.len());
                    }
                    stack.push(name);
                }
                // `<release version="1.0"/>`: opened and closed at once.
                Event::Empty(start) => {
                    if let Some(component) = current.as_mut() {
                        let name = start.local_name().as_ref().to_owned();
                        component.open(&name, &start, stack.len());
                        component.close(stack.len());
                    }
                }
                Event::End(_) => {
                    stack.pop();
                    if let Some(component) = current.as_mut() {
                        if stack.len() == component.depth {
                            if let Some(done) = current.take() {
                                if catalog.apps.len() < MAX_COMPONENTS {
                                    done.store(&mut catalog.apps);
                                }
                            }
                        } else {
                            component.close(stack.len());
                        }
                    }
                }
                Event::Text(text) => {
                    if let Some(component) = current.as_mut() {
                        component.text(&text.xml10_content());
                    }
                }
                Event::CData(data) => {
                    if let Some(component) = current.as_mut() {
                        component.text(&data);
                    }
                }
                Event::GeneralRef(reference) => {
                    if let Some(component) = current.as_mut() {
                        if let Ok(Some(ch)) = reference.resolve_char_ref() {
                            component.text(ch.encode_utf8(&mut [0; 4]));
                        } else if let Some(text) = resolve_predefined_entity(&reference) {
                            component.text(text);
                        }
                    }
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        Ok(catalog)
    }
}

/// Which field of a component the text being read belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    Name,
    Summary,
    FlatpakBundle,
}

#[derive(Debug)]
struct Component {
    /// Depth of the `<component>` element.
    depth: usize,
    reading: Option<Field>,
    id: String,
    bundle: String,
    name: Option<String>,
    summary: Option<String>,
    /// Inside `<releases>`: releases are its children.
    in_releases: bool,
    /// The newest release so far: its timestamp (0 when it has none) and version.
    newest_release: Option<(u64, String)>,
}

impl Component {
    fn new(depth: usize) -> Self {
        Self {
            depth,
            reading: None,
            id: String::new(),
            bundle: String::new(),
            name: None,
            summary: None,
            in_releases: false,
            newest_release: None,
        }
    }

    /// An element opened at `depth`; only direct children of the component count, and
    /// names and summaries only in the untranslated form.
    fn open(&mut self, element: &str, start: &BytesStart<'_>, depth: usize) {
        self.reading = None;
        let attribute = |key: &str| {
            start
                .attributes()
                .flatten()
                .find(|a| a.key.as_ref() == key)
                .and_then(|a| {
                    a.normalized_value(XmlVersion::Implicit1_0)
                        .ok()
                        .map(|v| v.into_owned())
                })
        };
        if depth == self.depth + 2 && self.in_releases && element == "release" {
            self.release(attribute("version"), attribute("timestamp"));
            return;
        }
        if depth != self.depth + 1 {
            return;
        }
        self.in_releases = element == "releases";
        let untranslated =
            || attribute("xml:lang").is_none_or(|lang| lang == "C" || lang.is_empty());
        self.reading = match element {
            "id" => Some(Field::Id),
            "name" if self.name.is_none() && untranslated() => {
                self.name = Some(String::new());
                Some(Field::Name)
            }
            "summary" if self.summary.is_none() && untranslated() => {
                self.summary = Some(String::new());
                Some(Field::Summary)
            }
            "bundle" if attribute("type").as_deref() == Some("flatpak") => {
                Some(Field::FlatpakBundle)
            }
            _ => None,
        };
    }

    /// A `<release>`: kept when newer than the one kept, or the first one when releases carry
    /// no timestamps (AppStream lists them newest first).
    fn release(&mut self, version: Option<String>, timestamp: Option<String>) {
        let Some(version) = version
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty() && v.len() <= MAX_VERSION_BYTES)
        else {
            return;
        };
        let timestamp = timestamp
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let newer = match &self.newest_release {
            None => true,
            Some((kept, _)) => timestamp > *kept,
        };
        if newer {
            self.newest_release = Some((timestamp, version));
        }
    }

    fn close(&mut self, depth: usize) {
        self.reading = None;
        if depth == self.depth + 1 {
            self.in_releases = false;
        }
    }

    fn text(&mut self, text: &str) {
        let target = match self.reading {
            Some(Field::Id) => &mut self.id,
            Some(Field::FlatpakBundle) => &mut self.bundle,
            Some(Field::Name) => match self.name.as_mut() {
                Some(name) => name,
                None => return,
            },
            Some(Field::Summary) => match self.summary.as_mut() {
                Some(summary) => summary,
                None => return,
            },
            None => return,
        };
        if target.len() + text.len() <= MAX_TEXT_BYTES {
            target.push_str(text);
        }
    }

    /// Files the component under the app ID of its Flatpak bundle, else under its `<id>`
    /// (without the `.desktop` suffix older documents carry).
    fn store(self, apps: &mut HashMap<String, AppEntry>) {
        let clean = |text: Option<String>| {
            text.map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
                .filter(|t| !t.is_empty())
        };
        let entry = AppEntry {
            name: clean(self.name),
            summary: clean(self.summary),
            version: self.newest_release.map(|(_, version)| version),
        };
        let bundle_id = FlatpakRef::parse(self.bundle.trim()).map(|r| r.id.to_owned());
        let id = self.id.trim();
        let plain_id = id.strip_suffix(".desktop").unwrap_or(id).to_owned();
        for key in bundle_id.into_iter().chain([plain_id]) {
            if !key.is_empty() {
                apps.entry(key).or_insert_with(|| entry.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<components version="0.8" origin="flatpak">
  <component type="desktop">
    <id>org.example.App.desktop</id>
    <name>Example &amp; Greeter</name>
    <name xml:lang="de">Beispiel</name>
    <summary>Prints a <![CDATA[greeting]]></summary>
    <description><p><name>not this</name></p></description>
    <bundle type="flatpak">app/org.example.Bundled/x86_64/stable</bundle>
    <releases>
      <release timestamp="1600000000" version="1.0"/>
      <release timestamp="1700000000" version="1.1"><description><p>Fixes</p></description></release>
    </releases>
    <description><release version="9.9"/></description>
  </component>
  <component type="desktop-application">
    <id>org.example.Other</id>
    <name xml:lang="fr">Autre</name>
    <name>Other</name>
    <releases><release version="2.0"/><release version="1.9"/></releases>
  </component>
</components>"#;

    #[test]
    fn finds_untranslated_names_by_bundle_and_id() {
        let catalog = Catalog::parse(DOC.as_bytes()).expect("parses");
        let bundled = catalog.get("org.example.Bundled").expect("by bundle");
        assert_eq!(bundled.name.as_deref(), Some("Example & Greeter"));
        assert_eq!(bundled.summary.as_deref(), Some("Prints a greeting"));
        assert_eq!(catalog.get("org.example.App"), Some(bundled));
        let other = catalog.get("org.example.Other").expect("by id");
        assert_eq!(other.name.as_deref(), Some("Other"));
        assert_eq!(other.summary, None);
        assert_eq!(
            bundled.version.as_deref(),
            Some("1.1"),
            "the newest by timestamp"
        );
        assert_eq!(
            other.version.as_deref(),
            Some("2.0"),
            "the first without timestamps"
        );
    }

    #[test]
    fn refuses_broken_and_deep_documents() {
        assert!(Catalog::parse(b"<components><component><id>x</name></component>").is_err());
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        assert!(Catalog::parse(deep.as_bytes()).is_err());
        assert_eq!(Catalog::parse(b"").expect("empty"), Catalog::default());
    }
}
