-- stats.bag_history has been neither written nor read since 0003 (a bag's history is read from
-- the audit trail); the binaries of that release only named it in `rebuild`'s TRUNCATE, an
-- operator command. Dropped one release later, as 0003 said.
DROP TABLE stats.bag_history;
