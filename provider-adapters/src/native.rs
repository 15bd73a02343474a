//! Native MIMI content: validated and passed through unchanged (the exact bytes, so message
//! IDs stay what the sender computed).

use mimi_content::Message;

use crate::{Adapter, AdapterError, Context, Provider, Translated, invalid};

/// The identity adapter for MIMI-native clients.
#[derive(Debug, Clone, Copy, Default)]
pub struct Native;

impl Adapter for Native {
    const PROVIDER: Provider = Provider::Native;
    type Native = Message;

    fn parse(&self, bytes: &[u8]) -> Result<Message, AdapterError> {
        Message::decode(bytes.to_vec()).map_err(|e| invalid(Provider::Native, e.to_string()))
    }

    fn serialize(&self, native: &Message) -> Vec<u8> {
        native.bytes().to_vec()
    }

    fn native_id(&self, native: &Message) -> Option<String> {
        native.id().ok().map(|i| i.to_hex())
    }

    fn to_mimi(
        &self,
        ctx: &mut Context<'_>,
        _sender: &str,
        native: &Message,
    ) -> Result<Translated<Message>, AdapterError> {
        ctx.record(Provider::Native, self.native_id(native).as_deref(), native)?;
        Ok(Translated::one(native.clone()))
    }

    fn from_mimi(
        &self,
        ctx: &mut Context<'_>,
        sender: &str,
        msg: &Message,
    ) -> Result<Translated<Message>, AdapterError> {
        self.to_mimi(ctx, sender, msg)
    }
}
