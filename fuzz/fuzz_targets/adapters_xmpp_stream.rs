//! An XMPP stream read through the namespace-aware stream reader, delivered in chunks whose
//! sizes the input chooses: never panics, and the items do not depend on the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mimi_adapters::xml::{StreamItem, StreamReader, XmlError};

/// Hands out the stream in chunks of 1..=8 bytes chosen by `sizes`.
struct Chunks<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    i: usize,
}

impl std::io::Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = usize::from(
            self.sizes
                .get(self.i % self.sizes.len().max(1))
                .copied()
                .unwrap_or(7)
                % 8
                + 1,
        );
        self.i += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn items(r: impl std::io::Read) -> Result<Vec<StreamItem>, XmlError> {
    let mut s = StreamReader::new(
        std::io::BufReader::with_capacity(8, r),
        "jabber:component:accept",
    );
    let mut out = Vec::new();
    while let Some(i) = s.next_item()? {
        out.push(i);
        if out.len() > 1000 {
            break;
        }
    }
    Ok(out)
}

fuzz_target!(|input: (&[u8], &[u8])| {
    let (data, sizes) = input;
    let whole = items(data);
    let chunked = items(Chunks { data, sizes, i: 0 });
    if let (Ok(a), Ok(b)) = (&whole, &chunked) {
        assert_eq!(a, b, "the items depend on how the stream was chunked");
    }
});
