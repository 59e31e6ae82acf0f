//! AU cells as annotators write them ("4+L10", "R12(k)", "AU1, 2?"): any text parses or is refused
//! with a sentence, and what parses prints back to the same labels.
#![no_main]

use aullm::data::au::{AuRules, format_aus, parse_aus};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let rules = AuRules::default();
    if let Ok(labels) = parse_aus(&text, &rules) {
        let again =
            parse_aus(&format_aus(&labels), &rules).expect("a printed AU list parses again");
        assert_eq!(again, labels, "print/parse round trip of {text:?}");
    }
});
