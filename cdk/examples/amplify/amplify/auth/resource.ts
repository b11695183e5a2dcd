import { defineAuth } from '@aws-amplify/backend';

/** An Amplify Gen 2 user pool (sign-in with email) and its identity pool, as `npm create amplify` makes it. */
export const auth = defineAuth({
  loginWith: { email: true },
});
