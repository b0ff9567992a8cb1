-- The newest 835 adjudication of each claim line (line_number 0: the whole claim, a CLP without service
-- lines), by remit_order. Kept so that a remittance received before its claim's 837 is applied when the
-- claim arrives, and so that a re-delivered 837 keeps its adjudication.
CREATE TABLE IF NOT EXISTS claim_adjudications (
    claim_id       varchar(64)   NOT NULL,
    line_number    integer       NOT NULL,
    status         varchar(16)   NOT NULL,
    allowed_amount numeric(12,2),
    paid_amount    numeric(12,2),
    denial_reason  varchar(256),
    remit_order    varchar(64)   NOT NULL,
    CONSTRAINT claim_adjudications_natural_key PRIMARY KEY (claim_id, line_number)
);
