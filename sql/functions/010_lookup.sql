-- Lookups shared by every other function. Idempotent: CREATE OR REPLACE.

-- The coarse (truncated) vector of a full vector, exactly as stored for the set:
--   prefix:   l2_normalize(embedding[1:d])                 (MRL models)
--   rotation: l2_normalize((R . embedding)[1:d])          (fitted principal directions)
-- NULL when the set keeps no coarse vector or its rotation is not fitted yet.
-- Queries are projected with the same function, so documents and queries always agree.
CREATE OR REPLACE FUNCTION mrl.coarse_of(set_id int, embedding @vec@.vector, coarse_dim int DEFAULT NULL)
RETURNS @vec@.halfvec
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
    d int;
    projected @vec@.vector;
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets e WHERE e.id = coarse_of.set_id;
    IF NOT FOUND OR embedding IS NULL THEN
        RETURN NULL;
    END IF;
    d := coalesce(coarse_dim, s.truncate_dim);
    IF s.coarse_method = 'prefix' THEN
        RETURN @vec@.l2_normalize(@vec@.subvector(embedding, 1, d))::@vec@.halfvec;
    ELSIF s.coarse_method = 'rotation' AND s.rotation_version > 0 THEN
        SELECT array_agg(-(embedding OPERATOR(@vec@.<#>) c.direction) ORDER BY c.component)::real[]::@vec@.vector
          INTO projected
          FROM mrl.rotation_components c
         WHERE c.set_id = s.id AND c.component < d;
        RETURN @vec@.l2_normalize(projected)::@vec@.halfvec;
    END IF;
    RETURN NULL;
END
$fn$;
