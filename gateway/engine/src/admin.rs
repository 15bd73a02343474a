//! Operators' actions on queues: dead letters retried (back at the end of the follower's
//! outbox for the room) or dropped, out-of-sync marks cleared. Each is one step: the dead
//! letters and the outbox change in the same commit.

use std::sync::Arc;

use mimi_proto::uri::{Domain, RoomUri};
use openmls_traits::crypto::OpenMlsCrypto;

use crate::store::rows::{self, DeadLetterRow, FollowerRow};
use crate::store::{Table, Write, keys};
use crate::{AdminCall, ClientReply, Engine, RequestId, Response};

/// Dead letters handled per call at most (call again for more).
const BATCH: usize = 10_000;

impl<C: OpenMlsCrypto> Engine<C> {
    pub(crate) fn admin_call(&mut self, id: RequestId, call: AdminCall) {
        let affected = match call {
            AdminCall::RetryDeadLetters { follower, room } => {
                self.dead_letters(&follower, &room, true)
            }
            AdminCall::DropDeadLetters { follower, room } => {
                self.dead_letters(&follower, &room, false)
            }
            AdminCall::Resynced { follower } => self.resynced(&follower),
        };
        match affected {
            Ok(n) => {
                // Retried entries go out once committed (`Engine::committed` pumps).
                self.respond(
                    id,
                    Response::client(200, ClientReply::Admin { affected: n }),
                );
            }
            Err(e) => self.store_failed(Some(id), e),
        }
    }

    fn dead_letters(
        &mut self,
        follower: &Domain,
        room: &RoomUri,
        retry: bool,
    ) -> Result<u64, crate::store::StoreError> {
        let fk = follower.as_str().as_bytes();
        let rows = self
            .store
            .scan(Table::DeadLetters, &keys::prefix(&[fk]), None, BATCH)?;
        let mut n = 0;
        for (k, v) in rows {
            let dl: DeadLetterRow = rows::decode(Table::DeadLetters, &v)?;
            if dl.room != room.as_str() {
                continue;
            }
            if retry {
                let Some(body) = self.store.get(Table::Bodies, &dl.body)? else {
                    continue;
                };
                let body: Arc<[u8]> = Arc::from(body);
                self.outbox_push(follower, room, dl.body, &body);
            }
            self.writes.delete(Table::DeadLetters, k);
            self.writes.push(Write::Unref { id: dl.body });
            n += 1;
        }
        Ok(n)
    }

    fn resynced(&mut self, follower: &Domain) -> Result<u64, crate::store::StoreError> {
        let fk = follower.as_str().as_bytes();
        let mut row: FollowerRow = self
            .store
            .get(Table::Followers, fk)?
            .map(|b| rows::decode(Table::Followers, &b))
            .transpose()?
            .unwrap_or_default();
        let marked = self
            .shared
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .out_of_sync
            .remove(follower.as_str())
            .is_some();
        let was = marked || row.out_of_sync_since_ms > 0;
        row.out_of_sync_since_ms = 0;
        self.writes.put(Table::Followers, fk.to_vec(), &row);
        Ok(u64::from(was))
    }
}
