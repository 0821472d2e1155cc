//! The assignment of work items (partitions) to workers: every item exactly once, balanced by
//! weight (bytes to back up), and sticky.
//!
//! 1. **Keep.** In member-id order, each member keeps the items it says it holds that still
//!    exist and that no earlier member kept (an item two members claim goes to the first).
//! 2. **Shed.** `share` is the total weight divided by the member count, rounded up. A member
//!    whose kept weight is over `share` plus the heaviest item's weight gives up its lightest
//!    items until it is not.
//! 3. **Deal.** The items nobody kept, heaviest first, each go to the member with the least
//!    weight (ties: the smaller member id).
//!
//! So no member ends with more than `share` + the heaviest item (a kept set is within it after
//! step 2, and a dealt item goes to a member at or below the mean). An assignment fed back in
//! comes out unchanged, so a rebalance that changes nothing moves nothing, and when a member
//! leaves, the others keep all they had (the share only grows).

use std::collections::{BTreeMap, BTreeSet};

/// Assigns `items` (item → weight) to `members` (member id → the items it holds now).
/// Returns every member's items, sorted; every member appears, possibly with none.
pub fn assign<K: Ord + Clone>(
    members: &BTreeMap<String, Vec<K>>,
    items: &BTreeMap<K, u64>,
) -> BTreeMap<String, Vec<K>> {
    let mut out: BTreeMap<String, Vec<K>> = members.keys().map(|m| (m.clone(), Vec::new())).collect();
    if members.is_empty() {
        return out;
    }
    let total: u64 = items.values().sum();
    let heaviest = items.values().copied().max().unwrap_or(0);
    let count = members.len() as u64;
    let share = total.div_ceil(count);
    let limit = share.saturating_add(heaviest);
    let mut loads: BTreeMap<&str, u64> = BTreeMap::new();
    let mut kept: BTreeSet<&K> = BTreeSet::new();
    for (member, held) in members {
        let mut mine: Vec<(&K, u64)> = held
            .iter()
            .filter_map(|item| items.get_key_value(item).map(|(k, w)| (k, *w)))
            .filter(|(k, _)| !kept.contains(k))
            .collect();
        mine.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
        mine.dedup_by(|a, b| a.0 == b.0);
        let mut load: u64 = mine.iter().map(|(_, w)| w).sum();
        let mut shed = 0;
        while load > limit && shed < mine.len() {
            load -= mine[shed].1;
            shed += 1;
        }
        for (item, _) in &mine[shed..] {
            kept.insert(item);
            out.get_mut(member).expect("every member").push((*item).clone());
        }
        loads.insert(member.as_str(), load);
    }
    let mut pool: Vec<(&K, u64)> = items
        .iter()
        .filter(|(k, _)| !kept.contains(k))
        .map(|(k, w)| (k, *w))
        .collect();
    pool.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    for (item, weight) in pool {
        let (&member, load) = loads
            .iter_mut()
            .min_by(|a, b| (*a.1).cmp(&*b.1).then_with(|| a.0.cmp(b.0)))
            .expect("members");
        *load += weight;
        out.get_mut(member).expect("every member").push(item.clone());
    }
    for items in out.values_mut() {
        items.sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn weights() -> impl Strategy<Value = BTreeMap<u16, u64>> {
        proptest::collection::btree_map(0u16..200, 0u64..1_000_000, 0..120)
    }

    /// Members with random holdings (items that may not exist, or be claimed twice).
    fn members() -> impl Strategy<Value = BTreeMap<String, Vec<u16>>> {
        proptest::collection::btree_map("[a-e][0-9]", proptest::collection::vec(0u16..220, 0..30), 1..8)
    }

    fn load(items: &[u16], weights: &BTreeMap<u16, u64>) -> u64 {
        items.iter().map(|i| weights[i]).sum()
    }

    proptest! {
        #[test]
        fn every_item_once_and_no_member_over_its_share_plus_the_heaviest(
            members in members(), weights in weights()
        ) {
            let out = assign(&members, &weights);
            prop_assert_eq!(out.keys().collect::<Vec<_>>(), members.keys().collect::<Vec<_>>());
            let mut all: Vec<u16> = out.values().flatten().copied().collect();
            all.sort();
            prop_assert_eq!(all, weights.keys().copied().collect::<Vec<_>>());
            let total: u64 = weights.values().sum();
            let limit = total.div_ceil(members.len() as u64) + weights.values().copied().max().unwrap_or(0);
            for (member, items) in &out {
                prop_assert!(load(items, &weights) <= limit, "{} holds {}", member, load(items, &weights));
            }
        }

        #[test]
        fn an_assignment_fed_back_comes_out_unchanged(members in members(), weights in weights()) {
            let first = assign(&members, &weights);
            prop_assert_eq!(assign(&first, &weights), first);
        }

        #[test]
        fn when_a_member_leaves_the_others_keep_what_they_had(
            members in members(), weights in weights(), leaving in 0usize..8
        ) {
            let first = assign(&members, &weights);
            let gone = first.keys().nth(leaving % first.len()).cloned().unwrap();
            let mut rest = first.clone();
            rest.remove(&gone);
            prop_assume!(!rest.is_empty());
            let second = assign(&rest, &weights);
            for (member, had) in &rest {
                for item in had {
                    prop_assert!(second[member].contains(item), "{} lost {}", member, item);
                }
            }
        }
    }

    #[test]
    fn a_new_member_takes_only_what_the_others_hold_over_their_share() {
        let weights: BTreeMap<u16, u64> = (0..12).map(|i| (i, 10)).collect();
        let one = assign(&BTreeMap::from([("a".to_owned(), vec![])]), &weights);
        assert_eq!(one["a"].len(), 12);
        // b joins: share 60 + heaviest 10 = 70, so a keeps 7 and b gets the 5 it shed.
        let two = assign(
            &BTreeMap::from([("a".to_owned(), one["a"].clone()), ("b".to_owned(), vec![])]),
            &weights,
        );
        assert_eq!((two["a"].len(), two["b"].len()), (7, 5));
        assert!(two["a"].iter().all(|i| one["a"].contains(i)));
    }
}
