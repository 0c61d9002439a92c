// The printable sheet of street signs: the print button (the sheet itself is static).
document.getElementById("print")?.addEventListener("click", () => window.print());
