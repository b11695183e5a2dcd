-- Revenue per UTC day and currency from _monetization.purchase (Pinpoint's names: attributes _currency and _product_id, metrics _item_price and _quantity): revenue (price times quantity), units, paying users. No currency conversion; a purchase without a currency is counted under '(none)', one without a price is not counted.
-- Deduplication: the first copy of each event_id.
WITH p AS (
  SELECT dt, COALESCE(anonymous_id, user_id) AS actor,
         COALESCE(CASE WHEN contains(map_keys(properties), '_currency') THEN properties['_currency'] END, '(none)') AS currency,
         CAST(CASE WHEN contains(map_keys(properties), '_item_price') THEN properties['_item_price'] END AS DOUBLE) AS price,
         COALESCE(CAST(CASE WHEN contains(map_keys(properties), '_quantity') THEN properties['_quantity'] END AS DOUBLE), 1) AS quantity,
         row_number() OVER (PARTITION BY event_id ORDER BY received_at) AS copy
  FROM app_events
  WHERE event = '_monetization.purchase'
)
SELECT dt, currency,
       sum(price * quantity) AS revenue,
       sum(quantity) AS units,
       count(DISTINCT actor) AS paying_users
FROM p
WHERE copy = 1 AND price IS NOT NULL
GROUP BY dt, currency
ORDER BY dt, currency
