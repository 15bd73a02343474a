//! The 14 example messages of draft-ietf-mimi-content-08 (`examples/*.cbor` in the draft's
//! repository) with the message IDs the draft states for them. Bundled so that tools and
//! conformance suites can check an implementation without the draft at hand.

/// One example: its name in the draft, its exact CBOR bytes and the stated message ID (hex).
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// Name of the example (`original`, `reply`, ...).
    pub name: &'static str,
    /// The encoded message.
    pub cbor: &'static [u8],
    /// The message ID the draft states, 64 hex characters.
    pub message_id: &'static str,
}

/// Every example, in the draft's order.
pub const ALL: &[Example] = &[
    Example {
        name: "original",
        cbor: include_bytes!("../tests/vectors/original.cbor"),
        message_id: "017ce54837404c3696e0c747b985cb172716d0ed0a3d249ca63ace7d82a096f4",
    },
    Example {
        name: "reply",
        cbor: include_bytes!("../tests/vectors/reply.cbor"),
        message_id: "015354973c2b65ca937bf1e035ae53a5ab80e947afa43d46920d4202e5cc0b27",
    },
    Example {
        name: "reaction",
        cbor: include_bytes!("../tests/vectors/reaction.cbor"),
        message_id: "0158c4288911e50a8f6be3f47746b6682f10fd91bc8c05557aa589a3157aff68",
    },
    Example {
        name: "mention",
        cbor: include_bytes!("../tests/vectors/mention.cbor"),
        message_id: "018d825adf9f6be00dcafc5704c4102f5022e74219d0b603e4ba7622654042af",
    },
    Example {
        name: "mention-html",
        cbor: include_bytes!("../tests/vectors/mention-html.cbor"),
        message_id: "01967ff8e9a66819738ad5cf26d2e0388a3b81d86b0f61d129c077d043ee2a4e",
    },
    Example {
        name: "edit",
        cbor: include_bytes!("../tests/vectors/edit.cbor"),
        message_id: "014028c0deddbdea56bec26172f6ede953d11024cb82b8192b5e2aea62d7fb47",
    },
    Example {
        name: "delete",
        cbor: include_bytes!("../tests/vectors/delete.cbor"),
        message_id: "011d9efc78d04d4dcf4d82b07d5199bbef37011c1f0c7e004b6111c6dda504b4",
    },
    Example {
        name: "unlike",
        cbor: include_bytes!("../tests/vectors/unlike.cbor"),
        message_id: "013aadbb8f313253c8930f4e93c6ca54b2ed06d258185bdcec3870534c8a4ec4",
    },
    Example {
        name: "expiring",
        cbor: include_bytes!("../tests/vectors/expiring.cbor"),
        message_id: "01e59db8173939facc2c8a4a0f0ae8d0c7a11a81239626630c9464a8d6717a03",
    },
    Example {
        name: "attachment",
        cbor: include_bytes!("../tests/vectors/attachment.cbor"),
        message_id: "0176180c7d19a925021fe446d241134d05c38e0d999cdc0f39c391d2377ed9d1",
    },
    Example {
        name: "conferencing",
        cbor: include_bytes!("../tests/vectors/conferencing.cbor"),
        message_id: "01496d15a8dba28d7397f9868b70768e4a67f765d5b5b1ae9e03848c5fdeb0ba",
    },
    Example {
        name: "multipart-1",
        cbor: include_bytes!("../tests/vectors/multipart-1.cbor"),
        message_id: "01da5a515ec5db42cc4dcc19b90c3c31245d8a1cfcce11318f24eb11dce0990e",
    },
    Example {
        name: "multipart-2",
        cbor: include_bytes!("../tests/vectors/multipart-2.cbor"),
        message_id: "01d65918c6c51c8e76546337276ae6f4bfd873d867d5cb57c76bcdca3d999dd7",
    },
    Example {
        name: "multipart-3",
        cbor: include_bytes!("../tests/vectors/multipart-3.cbor"),
        message_id: "01cfebeadbdb83c1eefb6403ba4852daf8bbbf9cd53bf5035a74d5d741950c9f",
    },
];

/// The example called `name`.
pub fn by_name(name: &str) -> Option<&'static Example> {
    ALL.iter().find(|e| e.name == name)
}
