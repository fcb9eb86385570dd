//! The interface entities of an account, listed once for all the interface syncs that fell due
//! in the same second.
//!
//! The backend has no filter on its entity list (contract §5.9 step 2: `?parent=` is ignored),
//! so each sync that listed on its own fetched every entity of the account: at 1,000 devices of
//! 50 interfaces, 1,000 lists of 51,000 entities each round, up to `SNMP_MAX_DEVICES` of them
//! parsed at once (532 MB peak). A listing is now shared by the syncs of one firing second,
//! and dropped soon after the last of them.

use crate::interfaces::InterfaceEntity;
use collector::backend::{BackendClient, BackendError};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a listing no sync holds is kept for syncs of its second that start late.
const LINGER: Duration = Duration::from_secs(2);

/// The interface entities of one account by parent device, as listed for the syncs due at
/// `scheduled`.
pub struct Listing {
    scheduled: u64,
    by_parent: HashMap<u64, Vec<InterfaceEntity>>,
    /// Devices whose interfaces a sync changed since the listing: their next sync lists again.
    changed: Mutex<HashSet<u64>>,
    last_served: Mutex<Instant>,
}

impl Listing {
    /// Lists the entities of `account` and keeps its interfaces, each filed under its parent
    /// as it is read.
    async fn read(
        backend: &BackendClient,
        account: u64,
        scheduled: u64,
    ) -> Result<Listing, BackendError> {
        let mut by_parent = HashMap::new();
        backend
            .list_entities_kept(account, |entity| {
                file(&mut by_parent, InterfaceEntity::of(entity));
                None::<()>
            })
            .await?;
        Ok(Listing::new(scheduled, by_parent))
    }

    fn new(scheduled: u64, mut by_parent: HashMap<u64, Vec<InterfaceEntity>>) -> Listing {
        by_parent.values_mut().for_each(Vec::shrink_to_fit);
        Listing {
            scheduled,
            by_parent,
            changed: Mutex::new(HashSet::new()),
            last_served: Mutex::new(Instant::now()),
        }
    }

    /// The interface entities whose parent is `device`, in the backend's order.
    pub fn children(&self, device: u64) -> &[InterfaceEntity] {
        self.by_parent.get(&device).map_or(&[], Vec::as_slice)
    }

    /// Marks `device`'s interfaces as changed since this listing (created, updated or deleted).
    pub fn note_changed(&self, device: u64) {
        lock(&self.changed).insert(device);
    }

    fn serves(&self, scheduled: u64, device: u64) -> bool {
        self.scheduled == scheduled && !lock(&self.changed).contains(&device)
    }

    /// Whether nobody but the list of listings holds it and none was served for [`LINGER`].
    fn unused(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1 && lock(&self.last_served).elapsed() >= LINGER
    }
}

/// Files an interface under its parent device.
fn file(by_parent: &mut HashMap<u64, Vec<InterfaceEntity>>, interface: Option<InterfaceEntity>) {
    if let Some(interface) = interface {
        by_parent
            .entry(interface.parent)
            .or_default()
            .push(interface);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

type Listings = HashMap<(u64, u64), Arc<Listing>>;

/// The listings in use, one per account and firing second.
#[derive(Default)]
pub struct InterfaceLists {
    /// Behind an async lock held while listing, so that syncs waiting for the same listing
    /// wait for the one request rather than each making their own.
    listings: Arc<tokio::sync::Mutex<Listings>>,
}

impl InterfaceLists {
    /// The interface entities of `account` for a sync of `device` due at `scheduled`: the
    /// listing of that second unless `device` changed since, else a new one from the backend.
    /// A listing is dropped once no sync used it for [`LINGER`].
    pub async fn for_sync(
        &self,
        backend: &BackendClient,
        account: u64,
        device: u64,
        scheduled: u64,
    ) -> Result<Arc<Listing>, BackendError> {
        let key = (account, scheduled);
        let mut listings = self.listings.lock().await;
        if let Some(listing) = listings.get(&key).filter(|l| l.serves(scheduled, device)) {
            *lock(&listing.last_served) = Instant::now();
            return Ok(listing.clone());
        }
        let listing = Arc::new(Listing::read(backend, account, scheduled).await?);
        listings.insert(key, listing.clone());
        tokio::spawn(drop_when_unused(
            Arc::downgrade(&self.listings),
            key,
            Arc::downgrade(&listing),
        ));
        Ok(listing)
    }
}

/// Removes `listing` from `listings` once it is unused (or already replaced).
async fn drop_when_unused(
    listings: Weak<tokio::sync::Mutex<Listings>>,
    key: (u64, u64),
    listing: Weak<Listing>,
) {
    loop {
        tokio::time::sleep(LINGER).await;
        let Some(listings) = listings.upgrade() else {
            return;
        };
        let mut listings = listings.lock().await;
        match listings.get(&key) {
            Some(held) if Weak::ptr_eq(&Arc::downgrade(held), &listing) => {
                if held.unused() {
                    listings.remove(&key);
                    // A listing is the bot's biggest transient (50,000 interfaces at 1,000
                    // devices): its pages go back to the kernel rather than stay with glibc.
                    drop(listings);
                    collector::heap::give_back();
                    return;
                }
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entity(id: u64, entity_type: &str, parent: Option<u64>) -> Option<InterfaceEntity> {
        InterfaceEntity::of(
            serde_json::from_value(json!({"id": id, "name": format!("e{id}"),
                "entity_type": entity_type, "parent": parent, "details": {}}))
            .unwrap(),
        )
    }

    #[test]
    fn a_listing_keeps_interfaces_by_parent_and_forgets_the_rest() {
        let mut by_parent = HashMap::new();
        for id in [1, 2, 3, 4, 5, 6] {
            let (entity_type, parent) = match id {
                1 => ("device", None),
                2 | 3 => ("interface", Some(1)),
                4 => ("interface", Some(9)),
                5 => ("interface", None),
                _ => ("other", Some(1)),
            };
            file(&mut by_parent, entity(id, entity_type, parent));
        }
        let listing = Listing::new(60, by_parent);
        let ids = |device| -> Vec<u64> { listing.children(device).iter().map(|e| e.id).collect() };
        assert_eq!(ids(1), vec![2, 3]);
        assert_eq!(ids(9), vec![4]);
        assert!(ids(5).is_empty());
    }

    #[test]
    fn a_listing_serves_its_second_until_the_device_changed() {
        let listing = Listing::new(60, HashMap::new());
        assert!(listing.serves(60, 1));
        assert!(!listing.serves(120, 1), "another round lists again");
        listing.note_changed(1);
        assert!(!listing.serves(60, 1), "a device that changed lists again");
        assert!(listing.serves(60, 2));
    }

    #[tokio::test]
    async fn a_listing_is_dropped_once_no_sync_used_it_for_a_while() {
        let listings: Arc<tokio::sync::Mutex<Listings>> = Default::default();
        let listing = Arc::new(Listing::new(60, HashMap::new()));
        listings.lock().await.insert((1, 60), listing.clone());
        let key = (1, 60);
        let cleanup = tokio::spawn(drop_when_unused(
            Arc::downgrade(&listings),
            key,
            Arc::downgrade(&listing),
        ));
        tokio::time::sleep(LINGER * 2).await;
        assert!(listings.lock().await.contains_key(&key), "a sync holds it");
        drop(listing);
        tokio::time::timeout(LINGER * 3, cleanup)
            .await
            .unwrap()
            .unwrap();
        assert!(listings.lock().await.is_empty());
    }
}
