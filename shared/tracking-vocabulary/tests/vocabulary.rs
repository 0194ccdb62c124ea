use std::io::Write;

use orderbus_tracking_vocabulary::{
    Stage, Vocabulary, VocabularyError, EXPRESS_INFO, FROTEL, SHOPLINE, SWEETTRACKER,
};

fn operator_file(text: &str) -> tempfile_path::TempFile {
    tempfile_path::TempFile::with(text)
}

/// A file in the system temp dir, removed on drop (no extra crate for two tests' worth).
mod tempfile_path {
    use super::Write;
    use std::path::{Path, PathBuf};

    pub struct TempFile(PathBuf);

    impl TempFile {
        pub fn with(text: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "orderbus-vocabulary-{}-{:x}.toml",
                std::process::id(),
                rand_suffix()
            ));
            let mut file = std::fs::File::create(&path).expect("create temp file");
            file.write_all(text.as_bytes()).expect("write temp file");
            TempFile(path)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn rand_suffix() -> u128 {
        use std::time::{SystemTime, UNIX_EPOCH};
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u128;
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ (n << 100)
    }
}

#[test]
fn the_builtin_tables_load_and_map_every_sweettracker_level() {
    let v = Vocabulary::builtin().expect("built-in vocabulary is valid");
    let levels = [
        ("1", Stage::InfoReceived),
        ("2", Stage::PickedUp),
        ("3", Stage::InTransit),
        ("4", Stage::AtBranch),
        ("5", Stage::OutForDelivery),
        ("6", Stage::Delivered),
        ("-99", Stage::Exception),
    ];
    for (level, stage) in levels {
        assert_eq!(
            v.lookup(SWEETTRACKER, Some("04"), level),
            Ok(stage),
            "level {level}"
        );
    }
    let unknown = v
        .lookup(SWEETTRACKER, None, "7")
        .expect_err("level 7 is not documented");
    assert_eq!(unknown.status, "7");
    assert!(unknown
        .to_string()
        .contains("not in the tracking vocabulary"));
    assert!(v.sources().any(|s| s == FROTEL));
}

#[test]
fn spellings_are_compared_in_their_normal_form() {
    let v = Vocabulary::builtin().expect("valid");
    assert_eq!(
        v.lookup(SHOPLINE, None, " delivered "),
        Ok(Stage::Delivered)
    );
    assert_eq!(
        v.lookup(SHOPLINE, None, "Out_For_Delivery"),
        Ok(Stage::OutForDelivery)
    );
    // Arabic yeh and a zero-width non-joiner instead of the space: the same Persian word.
    assert_eq!(
        v.lookup(FROTEL, None, "تحويل\u{200C}شده"),
        Ok(Stage::Delivered)
    );
    assert_eq!(v.lookup(FROTEL, None, "معلق"), Ok(Stage::InfoReceived));
    assert!(v.lookup(FROTEL, None, "وضعیت ناشناخته").is_err());
}

#[test]
fn every_stage_has_a_published_state_that_reads_back_as_itself() {
    let v = Vocabulary::builtin().expect("valid");
    for stage in Stage::ALL {
        let code = v.express_state(stage);
        assert_eq!(v.lookup(EXPRESS_INFO, None, &code.to_string()), Ok(stage));
    }
    assert_eq!(
        v.express_state(Stage::InTransit),
        0,
        "the spec's sample state 0 is in transit"
    );
}

#[test]
fn an_operator_file_adds_carrier_specific_statuses_without_a_code_change() {
    // Carrier 99 reports its own level 4 as out for delivery; a new source needs no code.
    let carrier_table = operator_file(
        r#"
        [sources.sweettracker.carriers."99"]
        "4" = "out_for_delivery"

        [sources.newcarrier.statuses]
        "DLV" = "delivered"
        "#,
    );
    let v = Vocabulary::load(&[carrier_table.path()]).expect("operator file is valid");
    assert_eq!(
        v.lookup(SWEETTRACKER, Some("99"), "4"),
        Ok(Stage::OutForDelivery)
    );
    assert_eq!(
        v.lookup(SWEETTRACKER, Some("04"), "4"),
        Ok(Stage::AtBranch),
        "other carriers keep the default"
    );
    assert_eq!(v.lookup(SWEETTRACKER, None, "4"), Ok(Stage::AtBranch));
    assert_eq!(v.lookup("newcarrier", None, "dlv"), Ok(Stage::Delivered));
}

#[test]
fn invalid_operator_files_are_refused_with_the_file_and_the_reason() {
    let cases = [
        (
            "[sources.shopline.statuses]\n\"X\" = \"teleported\"\n",
            "teleported",
        ),
        (
            "[sources.shopline.statuses]\n\" \" = \"delivered\"\n",
            "blank status",
        ),
        (
            "[sources.shopline.statuses]\n\"Done\" = \"delivered\"\n\"DONE\" = \"returned\"\n",
            "written two ways",
        ),
        (
            "[sources.Shop-Line.statuses]\n\"X\" = \"delivered\"\n",
            "source name",
        ),
        ("[sources.shopline]\nstatus = {}\n", "unknown field"),
        (
            "[sources.shopline.statuses]\n\"X\" = \"delivered\"\n\"X\" = \"returned\"\n",
            "duplicate key",
        ),
        ("[express_state]\ndelivered = 77\n", "does not list"),
        ("not toml at all = = =\n", "tracking vocabulary file"),
    ];
    for (text, expected) in cases {
        let file = operator_file(text);
        let err = Vocabulary::load(&[file.path()]).expect_err(text);
        let message = err.to_string();
        assert!(message.contains(expected), "{text:?}: {message}");
        if !matches!(err, VocabularyError::Incomplete(_)) {
            assert!(
                message.contains(&file.path().display().to_string()),
                "{message} names the file"
            );
        }
    }
    let missing = Vocabulary::load(&["/nonexistent/vocabulary.toml"]).expect_err("missing file");
    assert!(matches!(missing, VocabularyError::Read { .. }), "{missing}");
}
