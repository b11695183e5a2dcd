-- Revenue per UTC day and currency from _monetization.purchase (Pinpoint's names: attributes _currency and _product_id, metrics _item_price and _quantity): revenue (price times quantity), units, paying users. No currency conversion; a purchase without a currency is counted under '(none)', one whose price, or quantity when it has one, is not written as a plain decimal number (-123.45) is not counted; no quantity is 1. Parameters: first day, last day (YYYY-MM-DD).
-- Repeats: the first copy of each event_id per day. On Athena: EXECUTE revenue USING '2026-11-01', '2026-11-30'
WITH p AS (
  SELECT dt, COALESCE(anonymous_id, user_id) AS actor,
         COALESCE(CASE WHEN contains(map_keys(properties), '_currency') THEN properties['_currency'] END, '(none)') AS currency,
         CASE WHEN contains(map_keys(properties), '_item_price') THEN properties['_item_price'] END AS price_text,
         CASE WHEN contains(map_keys(properties), '_quantity') THEN properties['_quantity'] END AS quantity_text,
         row_number() OVER (PARTITION BY dt, event_id ORDER BY received_at) AS copy
  FROM app_events
  WHERE dt BETWEEN ? AND ? AND event = '_monetization.purchase'
),
-- A number is read only in the form -123.45: the engines read other texts differently ('NaN', 'Infinity',
-- '2d', '0x1p3', '1_000'), so those are not numbers here.
n AS (
  SELECT dt, actor, currency, copy,
         CASE WHEN price_text <> '' AND regexp_replace(price_text, '^-?[0-9]+(\.[0-9]+)?$', '') = ''
              THEN CAST(price_text AS DOUBLE) END AS price,
         CASE WHEN quantity_text IS NULL THEN 1
              WHEN quantity_text <> '' AND regexp_replace(quantity_text, '^-?[0-9]+(\.[0-9]+)?$', '') = ''
              THEN CAST(quantity_text AS DOUBLE) END AS quantity
  FROM p
)
SELECT dt, currency,
       sum(price * quantity) AS revenue,
       sum(quantity) AS units,
       count(DISTINCT actor) AS paying_users
FROM n
WHERE copy = 1 AND price IS NOT NULL AND quantity IS NOT NULL
GROUP BY dt, currency
ORDER BY dt, currency
