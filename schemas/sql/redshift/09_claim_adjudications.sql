-- The newest 835 adjudication of each claim line (line_number 0: the whole claim, a CLP without service
-- lines), by remit_order. Kept so that a remittance received before its claim's 837 is applied when the
-- claim arrives, and so that a re-delivered 837 keeps its adjudication.
CREATE TABLE IF NOT EXISTS claim_adjudications (
    claim_id       VARCHAR(64)    NOT NULL ENCODE ZSTD,
    line_number    INTEGER        NOT NULL ENCODE AZ64,
    status         VARCHAR(16)    NOT NULL ENCODE ZSTD,
    allowed_amount DECIMAL(12, 2)          ENCODE AZ64,
    paid_amount    DECIMAL(12, 2)          ENCODE AZ64,
    denial_reason  VARCHAR(256)            ENCODE ZSTD,
    remit_order    VARCHAR(64)    NOT NULL ENCODE ZSTD,
    PRIMARY KEY (claim_id, line_number)
)
DISTSTYLE KEY
DISTKEY (claim_id)
COMPOUND SORTKEY (claim_id, line_number);
