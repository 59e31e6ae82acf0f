//! One line of an events file: a valid event round-trips through its JSON unchanged.
#![no_main]

use aullm::events::AuEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(ev) = AuEvent::from_json(text)
    {
        let back = AuEvent::from_json(&ev.to_json()).expect("a written event reads back");
        assert_eq!(back.to_json(), ev.to_json());
    }
});
