-- Applied by Open only on servers with Features.TokenIndex (20.1+), and
-- only when the table does not have the index yet. It covers parts
-- written from then on; older parts get it when merged, or at once with
-- ALTER TABLE messages MATERIALIZE INDEX body_tokens (a mutation an
-- operator runs when convenient). Search lower-cases the query terms to
-- match (hasToken(lower(body), 'term')).
ALTER TABLE messages ADD INDEX body_tokens lower(body) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 4
