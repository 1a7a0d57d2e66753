//! One side's price ladder: the levels in a `Vec` sorted so that the best price is last.
//!
//! Matching touches the best level almost always, and new orders mostly arrive near the top
//! of the book, so keeping the best at the end makes "best", "pop best" and "insert near the
//! top" O(1) or a short `memmove`, while any other price is found by binary search
//! (O(log levels)). A contiguous array of 32-byte levels beats a `BTreeMap` at the depths a
//! single symbol has (hundreds to a few thousand levels), and it allocates only when the
//! number of levels exceeds any seen before.
//!
//! Both sides share the code through a sort key: the bid key is the price, the ask key is its
//! bitwise complement (so a lower ask sorts higher), and "best" is always the largest key.

use super::level::Level;
use crate::num::Price;
use crate::order::Side;

#[derive(Debug)]
pub(super) struct Ladder {
    side: Side,
    /// Ascending by [`Ladder::key`]; the best level is last.
    levels: Vec<Level>,
}

impl Ladder {
    pub fn new(side: Side, capacity: usize) -> Self {
        Ladder {
            side,
            levels: Vec::with_capacity(capacity),
        }
    }

    #[inline]
    fn key(&self, price: Price) -> i64 {
        match self.side {
            Side::Buy => price.0,
            Side::Sell => !price.0,
        }
    }

    /// Position of `price`, or where it would be inserted.
    #[inline]
    pub fn find(&self, price: Price) -> Result<usize, usize> {
        let key = self.key(price);
        // Fast path: the best level (most traffic).
        match self.levels.last() {
            None => return Err(0),
            Some(best) => {
                let best_key = self.key(best.price);
                if key == best_key {
                    return Ok(self.levels.len() - 1);
                }
                if key > best_key {
                    return Err(self.levels.len());
                }
            }
        }
        self.levels
            .binary_search_by_key(&key, |l| self.key(l.price))
    }

    /// Index of the level at `price`, creating an empty one if needed.
    pub fn get_or_insert(&mut self, price: Price) -> usize {
        match self.find(price) {
            Ok(i) => i,
            Err(i) => {
                self.levels.insert(i, Level::new(price));
                i
            }
        }
    }

    #[inline]
    pub fn at_mut(&mut self, i: usize) -> &mut Level {
        &mut self.levels[i]
    }

    pub fn remove(&mut self, i: usize) {
        self.levels.remove(i);
    }

    #[inline]
    pub fn best(&self) -> Option<&Level> {
        self.levels.last()
    }

    #[inline]
    pub fn best_mut(&mut self) -> Option<&mut Level> {
        self.levels.last_mut()
    }

    pub fn pop_best(&mut self) {
        self.levels.pop();
    }

    /// Levels from best to worst.
    pub fn iter_best_first(&self) -> impl DoubleEndedIterator<Item = &Level> + '_ {
        self.levels.iter().rev()
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices(l: &Ladder) -> Vec<i64> {
        l.iter_best_first().map(|l| l.price.0).collect()
    }

    #[test]
    fn bids_best_is_highest_asks_best_is_lowest() {
        for (side, expect) in [
            (Side::Buy, vec![105, 103, 101, 99, -4]),
            (Side::Sell, vec![-4, 99, 101, 103, 105]),
        ] {
            let mut l = Ladder::new(side, 4);
            for p in [101, 99, 105, 103, -4, 101, 105] {
                let i = l.get_or_insert(Price(p));
                assert_eq!(l.at_mut(i).price, Price(p));
            }
            assert_eq!(prices(&l), expect);
            assert_eq!(l.len(), 5);
            assert_eq!(l.best().map(|b| b.price.0), Some(expect[0]));
            for p in [101, 99, 105, 103, -4] {
                assert!(l.find(Price(p)).is_ok());
            }
            assert!(l.find(Price(100)).is_err());
            let i = l.find(Price(101)).expect("present");
            l.remove(i);
            l.pop_best();
            assert_eq!(
                prices(&l),
                expect[1..]
                    .iter()
                    .copied()
                    .filter(|&p| p != 101)
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn extreme_prices_sort_correctly() {
        let mut l = Ladder::new(Side::Sell, 4);
        for p in [i64::MAX, i64::MIN, 0] {
            l.get_or_insert(Price(p));
        }
        assert_eq!(prices(&l), vec![i64::MIN, 0, i64::MAX]);
    }
}
