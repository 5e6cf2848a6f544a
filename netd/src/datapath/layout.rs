//! Map layout checks. A pinned map is reused by name with no type check
//! from the kernel, so before loading, the agent makes sure every pin it
//! would adopt has the key and value sizes this build expects, and that no
//! other layout version is live under the same bpffs.
use std::path::Path;

use anyhow::{bail, Context, Result};
use aya::maps::MapData;
use netd_common::{MAPS, MAP_LAYOUT_VERSION};

use super::PinLayout;

/// Refuses to start on pins of another layout, with what to do instead.
pub fn check(bpffs: &Path, pins: &PinLayout) -> Result<()> {
    let ours = format!("v{MAP_LAYOUT_VERSION}");
    if let Ok(entries) = std::fs::read_dir(bpffs) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let other_version = name
                .strip_prefix('v')
                .is_some_and(|n| n.parse::<u32>().is_ok());
            if other_version && name != ours {
                bail!(
                    "{} holds netd map layout {name}, this agent uses {ours}: stop the other \
                     netd and run its `netd reset --force`, or remove {}",
                    bpffs.display(),
                    entry.path().display()
                );
            }
        }
    }
    for spec in MAPS {
        let (key, value) = (spec.key_size, spec.value_size);
        let pin = pins.maps().join(spec.name);
        if !pin.exists() {
            continue;
        }
        let info = MapData::from_pin(&pin)
            .and_then(|m| m.info())
            .with_context(|| format!("cannot inspect pinned map {}", pin.display()))?;
        if info.key_size() != key || info.value_size() != value {
            bail!(
                "pinned map {} has key/value sizes {}/{}, this agent expects {key}/{value}: \
                 the layout changed without a version bump; run `netd reset --force`",
                pin.display(),
                info.key_size(),
                info.value_size()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use netd_common::{map_spec, MAPS};

    use super::super::{all_programs, ebpf_object};

    /// Sections and maps of the object that are not netd's pinned maps.
    fn not_pinned(name: &str) -> bool {
        name.starts_with('.') || name == "AYA_LOGS"
    }

    /// Without root: the object the binary embeds has every map of
    /// `netd_common::MAPS` with its key and value sizes and capacity, no
    /// map the table lacks, and every program the loader loads by name.
    #[test]
    fn the_embedded_object_is_what_the_loader_names() {
        let obj = aya_obj::Object::parse(ebpf_object()).expect("the embedded object parses");
        let mut wrong = Vec::new();
        for spec in MAPS {
            let Some(m) = obj.maps.get(spec.name) else {
                wrong.push(format!("map {} is not in the object", spec.name));
                continue;
            };
            let got = (m.key_size(), m.value_size(), m.max_entries());
            let want = (spec.key_size, spec.value_size, spec.max_entries);
            if got != want {
                wrong.push(format!(
                    "map {}: key/value/entries {got:?} in the object, {want:?} in netd_common::MAPS",
                    spec.name
                ));
            }
        }
        for name in obj.maps.keys() {
            if !not_pinned(name) && map_spec(name).is_none() {
                wrong.push(format!(
                    "map {name} of the object is not in netd_common::MAPS"
                ));
            }
        }
        for p in all_programs() {
            if !obj.programs.contains_key(p) {
                wrong.push(format!("program {p} is not in the object"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert!(MAPS.len() >= 20 && all_programs().count() >= 9);
    }

    #[test]
    fn map_names_are_unique() {
        for (i, a) in MAPS.iter().enumerate() {
            assert!(
                MAPS[i + 1..].iter().all(|b| b.name != a.name),
                "{} twice",
                a.name
            );
        }
    }
}
