-- Revenue per UTC day and currency from _monetization.purchase (Pinpoint's names: attributes _currency and _product_id, metrics _item_price and _quantity): revenue (price times quantity), units, paying users. No currency conversion; a purchase without a currency is counted under '(none)', one without a numeric price is not counted (a quantity that is not a number counts as 1). Parameters: first day, last day (YYYY-MM-DD).
-- Repeats: the first copy of each event_id per day. On Athena: EXECUTE revenue USING '2026-11-01', '2026-11-30'
WITH p AS (
  SELECT dt, COALESCE(anonymous_id, user_id) AS actor,
         COALESCE(CASE WHEN contains(map_keys(properties), '_currency') THEN properties['_currency'] END, '(none)') AS currency,
         TRY_CAST(CASE WHEN contains(map_keys(properties), '_item_price') THEN properties['_item_price'] END AS DOUBLE) AS price,
         COALESCE(TRY_CAST(CASE WHEN contains(map_keys(properties), '_quantity') THEN properties['_quantity'] END AS DOUBLE), 1) AS quantity,
         row_number() OVER (PARTITION BY dt, event_id ORDER BY received_at) AS copy
  FROM app_events
  WHERE dt BETWEEN ? AND ? AND event = '_monetization.purchase'
)
SELECT dt, currency,
       sum(price * quantity) AS revenue,
       sum(quantity) AS units,
       count(DISTINCT actor) AS paying_users
FROM p
WHERE copy = 1 AND price IS NOT NULL
GROUP BY dt, currency
ORDER BY dt, currency
