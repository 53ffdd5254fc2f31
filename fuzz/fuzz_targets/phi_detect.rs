//! phi-guard's detector on arbitrary text: never panics, and its findings
//! are always usable as redactions (sorted, disjoint, in bounds, on
//! character boundaries), so a redacting decision can never be malformed.

#![no_main]

use cloister_phi_guard::detect::detect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let findings = detect(&text);
    let mut previous_end = 0;
    for f in &findings {
        assert!(f.start < f.end, "empty span {f:?}");
        assert!(f.end <= text.len(), "span past the text {f:?}");
        assert!(f.start >= previous_end, "overlapping or unsorted {f:?}");
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        previous_end = f.end;
    }
});
