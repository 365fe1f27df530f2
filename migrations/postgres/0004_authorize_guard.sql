-- Authorization reads a batch's vouchers without locking them, decides, and
-- writes its effects in one statement that updates every voucher it accepted
-- only if the row is still the version it read (same ctid and xmin). This
-- function is that statement's last step: when fewer vouchers were updated than
-- were accepted, another transaction changed one of them since the read, and the
-- whole statement fails with a serialization failure (40001); the store then runs
-- the batch again, under row locks.
CREATE FUNCTION rrnet_vouchers_unchanged(updated BIGINT, accepted BIGINT) RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF updated <> accepted THEN
        RAISE EXCEPTION 'rrnet: % of % accepted vouchers changed since they were read',
            accepted - updated, accepted
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN updated;
END
$$;
