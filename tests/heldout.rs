//! The held-out generator never reaches training: a training set built from the `general` preset
//! holds neither the mesh family nor a held-out photo's face, its aligned clips share no fingerprint
//! with the held-out set's, and `aullm train`'s loader refuses the held-out set. The new generator
//! is deterministic per seed.

use aullm::config::Config;
use aullm::data::synth::faces::{HELDOUT_PHOTOS, PhotoSet, manifest_faces};
use aullm::data::synth::motion::Family;
use aullm::data::synth::{SynthConfig, generate_from};
use aullm::train::DatasetArg;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::Path;

fn tiny(mut c: SynthConfig) -> SynthConfig {
    c.subjects = 3;
    c.clips_per_subject = 2;
    c.long_videos = 0;
    c
}

fn truth(root: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(root.join("synth_truth.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Hash of an aligned clip's pixels.
fn fingerprint(clip: &aullm::clip::Clip) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    clip.crops.hash(&mut h);
    h.finish()
}

fn aligned(root: &Path, cfg: &Config, cache: &Path) -> Vec<u64> {
    let loaded = aullm::data::load(
        root,
        aullm::data::Dataset::Casme2,
        &aullm::data::LoadOptions::default(),
    )
    .unwrap();
    aullm::train::clips::load_or_align(&loaded, cfg, cache, 2)
        .unwrap()
        .clips
        .iter()
        .map(|c| fingerprint(&c.clip))
        .collect()
}

#[test]
fn the_heldout_family_and_photos_never_reach_training() {
    let cfg = Config::default();
    let dir = tempfile::tempdir().unwrap();
    let (train_root, held_root) = (dir.path().join("train"), dir.path().join("heldout"));
    let train_faces = manifest_faces(&cfg.models, &cfg.face, PhotoSet::Train).unwrap();
    let held_faces = manifest_faces(&cfg.models, &cfg.face, PhotoSet::Heldout).unwrap();
    assert!(
        train_faces.len() >= 30,
        "{} training faces",
        train_faces.len()
    );
    assert!(held_faces.len() >= 5, "{} held-out faces", held_faces.len());
    let general = tiny(SynthConfig::general());
    let heldout = tiny(SynthConfig::heldout());
    generate_from(&general, &train_faces, &train_root, 2).unwrap();
    generate_from(&heldout, &held_faces, &held_root, 2).unwrap();

    // What the generator decided: families and faces.
    let t = truth(&train_root);
    for c in t["plan"]["clips"].as_array().unwrap() {
        let fam = c["event"]["family"].as_str().unwrap();
        assert!(
            fam == "blobs" || fam == "muscles",
            "training clip of family {fam}"
        );
    }
    for id in t["identities"].as_array().unwrap() {
        let face = id["face"].as_str().unwrap();
        let photo = face.split('#').next().unwrap();
        assert!(
            !HELDOUT_PHOTOS.contains(&photo),
            "training identity from {face}"
        );
    }
    let h = truth(&held_root);
    assert_eq!(h["config"]["evaluation_only"], true);
    for c in h["plan"]["clips"].as_array().unwrap() {
        assert_eq!(c["event"]["family"], Family::Mesh.name());
    }

    // The training loader takes the training set and refuses the held-out one, naming it.
    let cache = dir.path().join("cache");
    let arg = |root: &Path| -> DatasetArg { format!("synth:{}", root.display()).parse().unwrap() };
    let set = aullm::train::load_clips(&[arg(&train_root)], &cfg, &cache, 2).unwrap();
    assert_eq!(set.clips.len(), 6);
    // Splits group people by the photo they came from, as synth_truth.json records it.
    for id in t["identities"].as_array().unwrap() {
        let photo = id["face"].as_str().unwrap().split('#').next().unwrap();
        let key = aullm::data::SubjectKey {
            dataset: aullm::data::Dataset::Casme2,
            subject: format!("sub{:02}", id["subject"].as_u64().unwrap()),
        };
        assert_eq!(set.groups.get(&key).map(String::as_str), Some(photo));
    }
    let err = aullm::train::load_clips(&[arg(&held_root)], &cfg, &cache, 2).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("evaluation set") && msg.contains("heldout"),
        "{msg}"
    );

    // No aligned training clip is a held-out clip.
    let train_prints: HashSet<u64> = set.clips.iter().map(|c| fingerprint(&c.clip)).collect();
    let held_prints = aligned(&held_root, &cfg, &cache);
    assert_eq!(held_prints.len(), 6);
    assert!(held_prints.iter().all(|p| !train_prints.contains(p)));

    // Same seed, same bytes (frames and annotations), with every new draw in play.
    let again = dir.path().join("again");
    generate_from(&general, &train_faces, &again, 1).unwrap();
    for rel in ["synth_truth.json", "CASME2-coding-synth.csv"] {
        assert_eq!(
            std::fs::read(train_root.join(rel)).unwrap(),
            std::fs::read(again.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert_eq!(aligned(&again, &cfg, &dir.path().join("cache2")), {
        let mut v: Vec<u64> = set.clips.iter().map(|c| fingerprint(&c.clip)).collect();
        v.truncate(6);
        v
    });
}
