// The 403 variant of the planner page: only the language toggle and sign-out work.

import { signOut } from "../command/api.js";
import { applyStatic, toggleLang } from "./i18n.js";

applyStatic();
document.getElementById("lang-toggle").addEventListener("click", toggleLang);
document.getElementById("logout").addEventListener("click", () => signOut().catch(() => {}));
